//! What an old primary wrote after the fork: its WAL from the fork point on, read with
//! `pg_waldump`, counted per relation (rows inserted, updated, deleted by transactions that
//! committed), with the transaction ids, so that what pg_rewind is about to discard can be
//! told before it runs (and rows found by `xmin`).
//!
//! Decisions: only heap changes of committed transactions count (an aborted one left
//! nothing); a transaction that began before the fork and committed after it is counted
//! only for the rows it wrote after the fork. Catalog relations (file numbers below 16384)
//! are left out: autovacuum and ANALYZE write there without any user.
//!
//! ```no_run
//! # async fn demo(old: &dyn pgrepl::Cluster) -> pgrepl::Result<()> {
//! let w = pgrepl::walafter::wal_after(old, 1, "0/5000000".parse().unwrap()).await?;
//! for ((db, rel), c) in &w.rels {
//!     println!("database {db}, relation {rel}: {} inserted", c.inserted);
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use host::CommandSpec;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::{PgreplError, Result};
use crate::lsn::Lsn;
use crate::sql::Sql;

/// The first file number of a relation that is not part of the system catalogs.
const FIRST_NORMAL_OID: u32 = 16384;

/// Rows changed in one relation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RelChanges {
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
}

impl RelChanges {
    /// All rows touched.
    pub fn total(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// What the WAL after the fork holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WalAfter {
    /// Where reading started (the fork point).
    pub from: Lsn,
    /// The last record read (the end of what the old primary wrote).
    pub end: Option<Lsn>,
    /// Records read.
    pub records: u64,
    /// Whether every segment from the fork on was there (else the counts are a lower bound).
    pub complete: bool,
    /// How reading ended, when it was not the normal end of the WAL.
    pub problem: Option<String>,
    /// Per (database oid, relation file number): rows changed by committed transactions.
    pub rels: BTreeMap<(u32, u32), RelChanges>,
    /// Per (database oid, relation file number): the committed transaction ids that
    /// inserted or updated rows there (the `xmin` of those rows).
    pub xids: BTreeMap<(u32, u32), BTreeSet<u32>>,
}

impl WalAfter {
    /// Whether any row of a user table changed.
    pub fn changed_rows(&self) -> bool {
        self.rels.values().any(|c| c.total() > 0)
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = line.find(key)? + key.len();
    line[i..].split([',', ' ']).find(|s| !s.is_empty())
}

/// Parses `pg_waldump` output (see the module docs for what is counted).
pub fn parse_waldump(text: &str, from: Lsn) -> WalAfter {
    let mut w = WalAfter {
        from,
        complete: true,
        ..Default::default()
    };
    let mut committed: HashSet<u32> = HashSet::new();
    // (xid, db, rel) -> changes, before knowing whether the transaction committed.
    let mut pending: HashMap<(u32, u32, u32), (RelChanges, bool)> = HashMap::new();
    for line in text.lines() {
        if line.starts_with("pg_waldump:") {
            // The end of the WAL: a record that does not follow (zeroes, a recycled
            // segment), nothing after the start, or the next segment not written yet.
            let end = line.contains("error in WAL record")
                || line.contains("could not find a valid record after")
                || (w.records > 0 && line.contains("could not find file"));
            if !end {
                w.problem = Some(line.trim_start_matches("pg_waldump: ").to_owned());
                w.complete = false;
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("rmgr: ") else {
            continue;
        };
        w.records += 1;
        if let Some(l) = field(line, "lsn: ").and_then(|l| l.parse::<Lsn>().ok()) {
            w.end = Some(l);
        }
        let rmgr = rest.split_whitespace().next().unwrap_or("");
        let xid: u32 = field(line, "tx: ")
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let Some(desc) = line.split_once("desc: ").map(|(_, d)| d) else {
            continue;
        };
        let op = desc.split_whitespace().next().unwrap_or("");
        if rmgr == "Transaction" {
            if op.starts_with("COMMIT") {
                committed.insert(xid);
                if let Some((_, subs)) = desc.split_once("subxacts:") {
                    committed.extend(
                        subs.split(|c: char| !c.is_ascii_digit())
                            .filter_map(|s| s.parse::<u32>().ok()),
                    );
                }
            }
            continue;
        }
        let change = match (rmgr, op.trim_end_matches("+INIT")) {
            ("Heap", "INSERT") => RelChanges {
                inserted: 1,
                ..Default::default()
            },
            ("Heap", "UPDATE" | "HOT_UPDATE") => RelChanges {
                updated: 1,
                ..Default::default()
            },
            ("Heap", "DELETE") => RelChanges {
                deleted: 1,
                ..Default::default()
            },
            ("Heap2", "MULTI_INSERT") => RelChanges {
                inserted: desc
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                ..Default::default()
            },
            _ => continue,
        };
        let Some(rel) = field(line, "blkref #0: rel ") else {
            continue;
        };
        let parts: Vec<u32> = rel.split('/').filter_map(|p| p.parse().ok()).collect();
        let [_, db, relfile] = parts[..] else {
            continue;
        };
        if relfile < FIRST_NORMAL_OID || xid == 0 {
            continue;
        }
        let e = pending.entry((xid, db, relfile)).or_default();
        e.0.inserted += change.inserted;
        e.0.updated += change.updated;
        e.0.deleted += change.deleted;
        e.1 |= change.inserted > 0 || change.updated > 0;
    }
    for ((xid, db, rel), (c, wrote)) in pending {
        if !committed.contains(&xid) {
            continue;
        }
        let r = w.rels.entry((db, rel)).or_default();
        r.inserted += c.inserted;
        r.updated += c.updated;
        r.deleted += c.deleted;
        if wrote {
            w.xids.entry((db, rel)).or_default().insert(xid);
        }
    }
    w
}

/// `pg_waldump` over `cluster`'s own WAL on `timeline` from `from` to its end, as its OS
/// user (reads files only).
pub fn waldump_spec(cluster: &dyn Cluster, timeline: u32, from: Lsn) -> CommandSpec {
    CommandSpec::new(cluster.bindir().join("pg_waldump").display().to_string())
        .arg(format!(
            "--path={}",
            cluster.data_dir().join("pg_wal").display()
        ))
        .arg(format!("--timeline={timeline}"))
        .arg(format!("--start={from}"))
        .env("LC_ALL", "C")
        .run_as(cluster.os_user())
        .asks()
}

/// Reads what `cluster` wrote on `timeline` from `from` on (see [`parse_waldump`]).
/// `pg_waldump` ends with an error at the end of the WAL: that end is normal.
pub async fn wal_after(cluster: &dyn Cluster, timeline: u32, from: Lsn) -> Result<WalAfter> {
    let out = cluster
        .host()
        .run_unchecked(&waldump_spec(cluster, timeline, from))
        .await
        .map_err(|e| {
            PgreplError::host(
                format!("reading the WAL of {} after {from}", cluster.label()),
                e,
            )
        })?;
    let text = format!("{}\n{}", out.stdout_text(), out.stderr_text());
    let mut w = parse_waldump(&text, from);
    // The segment of the fork is not there: either the old primary never wrote that far
    // (nothing after the fork), or it went on and recycled it (lost: a later one exists).
    if let Some(missing) = w
        .problem
        .as_deref()
        .filter(|_| w.records == 0)
        .and_then(|p| p.split('"').nth(1))
        .filter(|n| n.len() == 24)
    {
        let ls = CommandSpec::new("ls")
            .arg(cluster.data_dir().join("pg_wal").display().to_string())
            .run_as(cluster.os_user())
            .asks();
        let listing = cluster
            .host()
            .run(&ls)
            .await
            .map_err(|e| PgreplError::host(format!("listing the WAL of {}", cluster.label()), e))?
            .stdout_text();
        let later = listing
            .lines()
            .any(|f| f.len() == 24 && f[..8] == missing[..8] && f > missing);
        if !later {
            w.problem = None;
            w.complete = true;
        }
    }
    Ok(w)
}

/// `pg_dump -Fc` of database `db` of `cluster`, to standard output, as its OS user over its
/// socket (what keeps an old primary's writes before pg_rewind discards them).
pub fn dump_spec(cluster: &dyn Cluster, db: &str) -> CommandSpec {
    CommandSpec::new(cluster.bindir().join("pg_dump").display().to_string())
        .args(["-Fc", "-h", &cluster.socket_dir()])
        .args(["-p", &cluster.port().to_string()])
        .arg(format!("--dbname={db}"))
        .run_as(cluster.os_user())
        .asks()
}

/// Schema and name of the relations with file numbers `files` in the database `db` is
/// connected to (a file number no relation has any more is left out).
pub async fn relation_names(db: &dyn Sql, files: &[u32]) -> Result<BTreeMap<u32, String>> {
    if files.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = files.iter().map(u32::to_string).collect();
    let rows = db
        .query(&format!(
            "SELECT f::text, n.nspname || '.' || c.relname FROM unnest('{{{}}}'::oid[]) f \
             JOIN pg_class c ON c.oid = pg_filenode_relation(0, f) \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
            list.join(",")
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let f = r.first().cloned().flatten()?.parse().ok()?;
            Some((f, r.get(1).cloned().flatten()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
rmgr: Heap2       len (rec/tot):     56/    56, tx:          0, lsn: 0/015264F0, prev 0/01525DD0, desc: PRUNE latestRemovedXid 0 nredirected 0 ndead 1, blkref #0: rel 1663/5/1249 blk 17
rmgr: Heap        len (rec/tot):     61/    61, tx:        725, lsn: 0/01526590, prev 0/01526528, desc: INSERT+INIT off 1 flags 0x00, blkref #0: rel 1663/5/16385 blk 0
rmgr: Btree       len (rec/tot):     64/    64, tx:        725, lsn: 0/01526630, prev 0/015265D0, desc: INSERT_LEAF off 1, blkref #0: rel 1663/5/16391 blk 1
rmgr: Heap        len (rec/tot):     61/    61, tx:        725, lsn: 0/01526670, prev 0/01526630, desc: INSERT off 2 flags 0x00, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        725, lsn: 0/015266F0, prev 0/015266B0, desc: COMMIT 2026-12-01 16:15:10.582043 UTC
rmgr: Heap        len (rec/tot):     61/    61, tx:        727, lsn: 0/01526798, prev 0/01526758, desc: INSERT off 4 flags 0x00, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     46/    46, tx:        726, lsn: 0/01526818, prev 0/015267D8, desc: COMMIT 2026-12-01 16:15:10.582773 UTC; subxacts: 727
rmgr: Heap        len (rec/tot):     69/    69, tx:        728, lsn: 0/01526848, prev 0/01526818, desc: HOT_UPDATE off 1 xmax 728 flags 0x20 ; new off 5 xmax 0, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        728, lsn: 0/01526890, prev 0/01526848, desc: COMMIT 2026-12-01 16:15:10.583609 UTC
rmgr: Heap        len (rec/tot):     54/    54, tx:        729, lsn: 0/015268B8, prev 0/01526890, desc: DELETE off 2 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        729, lsn: 0/015268F0, prev 0/015268B8, desc: COMMIT 2026-12-01 16:15:10.583872 UTC
rmgr: Heap2       len (rec/tot):    391/   391, tx:        730, lsn: 0/01526918, prev 0/015268F0, desc: MULTI_INSERT 20 tuples flags 0x02, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        730, lsn: 0/01526FA0, prev 0/01526F60, desc: COMMIT 2026-12-01 16:15:10.587269 UTC
rmgr: Heap        len (rec/tot):     62/    62, tx:        731, lsn: 0/01526FC8, prev 0/01526FA0, desc: INSERT off 26 flags 0x00, blkref #0: rel 1663/5/16385 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        731, lsn: 0/01527048, prev 0/01527008, desc: ABORT 2026-12-01 16:15:10.587785 UTC
pg_waldump: error: error in WAL record at 0/1527048: invalid record length at 0/1527070: wanted 24, got 0
";

    #[test]
    fn committed_row_changes_are_counted_per_relation() {
        let w = parse_waldump(DUMP, "0/15264F0".parse().unwrap());
        assert!(w.complete && w.problem.is_none(), "{w:?}");
        assert_eq!(w.records, 15);
        assert_eq!(w.end, Some("0/1527048".parse().unwrap()));
        // 2 + 1 (a subtransaction of a committed one) + 20 inserted; the aborted one and
        // the catalog's prune do not count.
        assert_eq!(
            w.rels[&(5, 16385)],
            RelChanges {
                inserted: 23,
                updated: 1,
                deleted: 1
            }
        );
        assert_eq!(w.rels.len(), 1);
        assert_eq!(
            w.xids[&(5, 16385)].iter().copied().collect::<Vec<_>>(),
            [725, 727, 728, 730]
        );
        assert!(w.changed_rows());
        let empty = parse_waldump(
            "rmgr: XLOG len (rec/tot): 114/114, tx: 0, lsn: 0/3000028, prev 0/2000100, desc: CHECKPOINT_SHUTDOWN redo 0/3000028\n",
            "0/3000000".parse().unwrap(),
        );
        assert!(!empty.changed_rows() && empty.records == 1);
        let gone = parse_waldump(
            "pg_waldump: error: could not find file \"000000010000000000000003\": No such file or directory\n",
            "0/3000000".parse().unwrap(),
        );
        assert!(!gone.complete && gone.problem.is_some());
        let nothing = parse_waldump(
            "pg_waldump: error: could not find a valid record after 0/1566258\n",
            "0/1566258".parse().unwrap(),
        );
        assert!(nothing.complete && !nothing.changed_rows() && nothing.records == 0);
    }
}
