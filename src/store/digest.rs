//! Shard digests: BLAKE3 over every row of every table in primary-key order, with a
//! canonical encoding of each value, so the same data gives the same digest on SQLite
//! and on PostgreSQL. `seed` determinism and cross-backend equality are tested with it.

use super::{Shard, ShardConn, StoreError};

#[derive(Clone, Copy)]
enum Col {
    Int,
    OptInt,
    Text,
    OptText,
}

/// Tables, their canonical query and column kinds.
const TABLES: &[(&str, &[Col])] = &[
    (
        "SELECT id, carrier, number, origin, destination, sched_dep, sched_arr FROM flights ORDER BY id",
        &[Col::Int, Col::Text, Col::Int, Col::Text, Col::Text, Col::Int, Col::Int],
    ),
    (
        "SELECT flight_id, version, state, delay_minutes, updated_at FROM flight_status ORDER BY flight_id",
        &[Col::Int, Col::Int, Col::Text, Col::Int, Col::OptInt],
    ),
    (
        concat!("SELECT ", crate::store::row::event_columns!(), " FROM delay_events ORDER BY flight_id, version"),
        &[Col::Int, Col::Int, Col::Int, Col::Text, Col::Int, Col::Text, Col::Int, Col::Int, Col::OptText, Col::OptText],
    ),
];

fn put_int(h: &mut blake3::Hasher, v: Option<i64>) {
    match v {
        Some(v) => h.update(&[1]).update(&v.to_le_bytes()),
        None => h.update(&[0]),
    };
}

fn put_text(h: &mut blake3::Hasher, v: &str) {
    h.update(&(v.len() as u64).to_le_bytes()).update(v.as_bytes());
}

fn put_opt_text(h: &mut blake3::Hasher, v: Option<&str>) {
    match v {
        Some(v) => put_text(h.update(&[1]), v),
        None => {
            h.update(&[0]);
        }
    }
}

pub(crate) async fn shard_digest(shard: &Shard) -> Result<String, StoreError> {
    let index = shard.index;
    let mut hasher = blake3::Hasher::new();
    match &shard.conn {
        ShardConn::Sqlite(s) => {
            let raw = s.raw.clone();
            hasher = tokio::task::spawn_blocking(move || {
                raw.with(|c| {
                    for (sql, cols) in TABLES {
                        hasher.update(sql.as_bytes());
                        let mut stmt = c.prepare(sql)?;
                        let mut rows = stmt.query([])?;
                        while let Some(row) = rows.next()? {
                            for (i, col) in cols.iter().enumerate() {
                                match col {
                                    Col::Int => put_int(&mut hasher, Some(row.get(i)?)),
                                    Col::OptInt => put_int(&mut hasher, row.get(i)?),
                                    Col::Text => put_text(&mut hasher, &row.get::<_, String>(i)?),
                                    Col::OptText => {
                                        put_opt_text(&mut hasher, row.get::<_, Option<String>>(i)?.as_deref())
                                    }
                                }
                            }
                        }
                    }
                    Ok(hasher)
                })
            })
            .await
            .map_err(|e| StoreError::database(index, e))?
            .map_err(|e| StoreError::database(index, e))?;
        }
        ShardConn::Postgres(p) => {
            let client = p.raw.get().await.map_err(|e| StoreError::database(index, e))?;
            for (sql, cols) in TABLES {
                hasher.update(sql.as_bytes());
                let rows = client.query(*sql, &[]).await.map_err(|e| StoreError::database(index, e))?;
                for row in rows {
                    for (i, col) in cols.iter().enumerate() {
                        let e = |e| StoreError::database(index, e);
                        match col {
                            Col::Int => put_int(&mut hasher, Some(row.try_get(i).map_err(e)?)),
                            Col::OptInt => put_int(&mut hasher, row.try_get(i).map_err(e)?),
                            Col::Text => put_text(&mut hasher, row.try_get(i).map_err(e)?),
                            Col::OptText => put_opt_text(&mut hasher, row.try_get(i).map_err(e)?),
                        }
                    }
                }
            }
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}
