//! Reference data: real airports and carriers.
//!
//! Airports are listed busiest first (roughly by passenger traffic); the generator
//! turns that order into Zipf weights, so a handful of hubs get most departures as in
//! real schedules. Coordinates give realistic block times from great-circle distance.

/// An airport: IATA code, latitude and longitude in degrees.
pub struct Airport {
    pub code: &'static str,
    pub lat: f64,
    pub lon: f64,
}

const fn ap(code: &'static str, lat: f64, lon: f64) -> Airport {
    Airport { code, lat, lon }
}

/// Busiest first: the order is the popularity rank.
pub const AIRPORTS: &[Airport] = &[
    ap("ATL", 33.64, -84.43),
    ap("DXB", 25.25, 55.36),
    ap("DFW", 32.90, -97.04),
    ap("LHR", 51.47, -0.45),
    ap("HND", 35.55, 139.78),
    ap("DEN", 39.86, -104.67),
    ap("IST", 41.26, 28.74),
    ap("LAX", 33.94, -118.41),
    ap("ORD", 41.98, -87.90),
    ap("DEL", 28.56, 77.10),
    ap("CDG", 49.01, 2.55),
    ap("JFK", 40.64, -73.78),
    ap("CAN", 23.39, 113.30),
    ap("AMS", 52.31, 4.76),
    ap("SIN", 1.36, 103.99),
    ap("FRA", 50.03, 8.57),
    ap("MAD", 40.49, -3.57),
    ap("ICN", 37.46, 126.44),
    ap("PVG", 31.14, 121.81),
    ap("LAS", 36.08, -115.15),
    ap("MCO", 28.43, -81.31),
    ap("CLT", 35.21, -80.94),
    ap("BKK", 13.69, 100.75),
    ap("SEA", 47.45, -122.31),
    ap("MIA", 25.79, -80.29),
    ap("BCN", 41.30, 2.08),
    ap("SFO", 37.62, -122.38),
    ap("PHX", 33.43, -112.01),
    ap("EWR", 40.69, -74.17),
    ap("IAH", 29.99, -95.34),
    ap("MUC", 48.35, 11.79),
    ap("FCO", 41.80, 12.25),
    ap("SYD", -33.95, 151.18),
    ap("DOH", 25.27, 51.61),
    ap("BOS", 42.36, -71.01),
    ap("MSP", 44.88, -93.22),
    ap("YYZ", 43.68, -79.63),
    ap("GRU", -23.43, -46.47),
    ap("MEX", 19.44, -99.07),
    ap("LGW", 51.15, -0.19),
    ap("DUB", 53.42, -6.27),
    ap("ZRH", 47.46, 8.55),
    ap("CPH", 55.62, 12.65),
    ap("VIE", 48.11, 16.57),
    ap("OSL", 60.19, 11.10),
    ap("ARN", 59.65, 17.92),
    ap("HEL", 60.32, 24.96),
    ap("LIS", 38.77, -9.13),
    ap("ATH", 37.94, 23.94),
    ap("BRU", 50.90, 4.48),
];

/// Carriers, most flights first.
pub const CARRIERS: &[&str] = &[
    "AA", "DL", "UA", "WN", "FR", "U2", "LH", "AF", "BA", "EK", "TK", "QR", "KL", "IB", "AS", "B6", "SQ", "CX", "NH",
    "JL", "AC", "QF", "LX", "OS", "SK", "AY", "TP", "A3", "SN", "EI",
];

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: &Airport, b: &Airport) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AirportCode, Carrier};
    use std::collections::HashSet;

    #[test]
    fn codes_are_valid_and_unique() {
        let airports: HashSet<_> = AIRPORTS.iter().map(|a| AirportCode::parse(a.code).unwrap()).collect();
        assert_eq!(airports.len(), AIRPORTS.len());
        let carriers: HashSet<_> = CARRIERS.iter().map(|c| Carrier::parse(c).unwrap()).collect();
        assert_eq!(carriers.len(), CARRIERS.len());
    }

    #[test]
    fn distances_are_plausible() {
        let find = |c| AIRPORTS.iter().find(|a| a.code == c).unwrap();
        let jfk_lhr = distance_km(find("JFK"), find("LHR"));
        assert!((5_500.0..5_600.0).contains(&jfk_lhr), "{jfk_lhr}");
    }
}
