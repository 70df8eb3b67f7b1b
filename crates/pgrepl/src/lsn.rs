//! Write-ahead log positions and timelines.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A WAL position (`pg_lsn`), shown as PostgreSQL shows it: `16/B374D848`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an LSN (like 0/3000060)"))?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return Err(format!("{s:?} is out of range for an LSN"));
        }
        Ok(Self((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back as it is written (`0/3000060`): statuses kept in files are read again.
impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of a timeline history file: timeline `parent` ended at `switchpoint`, where
/// the next timeline forked off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineFork {
    /// The timeline that ended.
    pub parent: u32,
    /// Where it ended (the first LSN of the child timeline).
    pub switchpoint: Lsn,
}

/// Parses a `0000000N.history` file (`parent<TAB>lsn<TAB>reason` lines).
pub fn parse_history(text: &str) -> Result<Vec<TimelineFork>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let parent = f
                .next()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("bad history line {l:?}"))?;
            let switchpoint = f
                .next()
                .ok_or_else(|| format!("bad history line {l:?}"))?
                .parse()?;
            Ok(TimelineFork {
                parent,
                switchpoint,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_and_orders() {
        let a: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(a.0, (0x16 << 32) | 0xB374_D848);
        assert_eq!(a.to_string(), "16/B374D848");
        let b: Lsn = "0/3000060".parse().unwrap();
        assert!(b < a);
        assert!("x/1".parse::<Lsn>().is_err());
        assert!("1".parse::<Lsn>().is_err());
        assert!("100000000/0".parse::<Lsn>().is_err());
    }

    #[test]
    fn history_parses() {
        let h = parse_history("1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tx\n")
            .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].parent, 1);
        assert_eq!(h[1].switchpoint.to_string(), "0/5000000");
        assert!(parse_history("garbage").is_err());
    }
}
