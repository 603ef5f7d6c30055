//! SQL literals for the `adhoc` path: the only place a value becomes SQL text.
//!
//! Integers are rendered by the formatter (digits and an optional minus sign, nothing
//! else is possible). Text becomes a standard SQL string literal: wrapped in single
//! quotes with each quote doubled. That is the complete escaping rule for SQLite and
//! for PostgreSQL with `standard_conforming_strings = on`, which the store forces on
//! every PostgreSQL connection (with it off, backslashes would become escapes). NUL
//! cannot be stored in PostgreSQL text and would truncate SQLite's SQL, so it is
//! rejected here, although the domain types already exclude it.

use crate::store::StoreError;
use std::fmt::Write;

/// Appends `value` as an integer literal.
pub(crate) fn push_int(sql: &mut String, value: i64) {
    // Cannot fail: writing to a String is infallible.
    write!(sql, "{value}").expect("write to String");
}

/// Appends `value` as a quoted string literal.
pub(crate) fn push_text(sql: &mut String, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::Config("text values may not contain NUL".into()));
    }
    sql.reserve(value.len() + 2);
    sql.push('\'');
    for (i, part) in value.split('\'').enumerate() {
        if i > 0 {
            sql.push_str("''");
        }
        sql.push_str(part);
    }
    sql.push('\'');
    Ok(())
}

/// Appends an optional integer: `NULL` or the literal.
pub(crate) fn push_opt_int(sql: &mut String, value: Option<i64>) {
    match value {
        Some(v) => push_int(sql, v),
        None => sql.push_str("NULL"),
    }
}

/// Appends optional text: `NULL` or the quoted literal.
pub(crate) fn push_opt_text(sql: &mut String, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) => push_text(sql, v),
        None => {
            sql.push_str("NULL");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> String {
        let mut s = String::new();
        push_text(&mut s, v).unwrap();
        s
    }

    #[test]
    fn quotes_are_doubled_and_nothing_else_changes() {
        assert_eq!(text(""), "''");
        assert_eq!(text("crew"), "'crew'");
        assert_eq!(text("it's"), "'it''s'");
        assert_eq!(text("'); DROP TABLE flights; --"), "'''); DROP TABLE flights; --'");
        assert_eq!(text(r"back\slash"), r"'back\slash'");
        assert_eq!(text("遅延 ✈"), "'遅延 ✈'");
    }

    #[test]
    fn nul_is_rejected_and_ints_are_plain() {
        assert!(push_text(&mut String::new(), "a\0b").is_err());
        let mut s = String::new();
        push_int(&mut s, -42);
        push_opt_int(&mut s, None);
        push_opt_text(&mut s, None).unwrap();
        push_opt_text(&mut s, Some("it's")).unwrap();
        assert_eq!(s, "-42NULLNULL'it''s'");
    }
}
