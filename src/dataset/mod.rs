//! The deterministic flight-delay dataset: what `seed` writes and what the load
//! generator draws its keys from.
//!
//! Everything a flight is made of is a pure function of `(seed, flight id)`, so data
//! does not depend on the shard count, the backend, or the order in which seeding
//! threads run. The manifest records the inputs so later commands can reproduce the
//! key space (ids, airports, popularity) without reading the shards.

mod generator;
mod manifest;
mod reference;

pub use generator::{DatasetSpec, GeneratedFlight, Generator, Popularity, SpecError};
pub use manifest::{
    Backend, Counts, FIRST_LAYOUT, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, ManifestError, PostgresLayout,
    SqliteSettings,
};
pub use reference::{AIRPORTS, Airport, CARRIERS, distance_km};
