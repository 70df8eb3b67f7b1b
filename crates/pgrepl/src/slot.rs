//! Replication slot hygiene: create, drop, and flag the slots that threaten the disk (a
//! forgotten slot keeps WAL until the disk is full).

use serde::Serialize;

use crate::error::{PgreplError, Result};
use crate::ident::{quote_literal, Name};
use crate::sql::{execute, Sql};
use crate::status::{list_slots, Slot};

/// Creates a physical slot that reserves WAL at once; returns false when it existed.
pub async fn create_slot(db: &dyn Sql, name: &Name) -> Result<bool> {
    if list_slots(db)
        .await?
        .iter()
        .any(|s| s.name == name.as_str())
    {
        return Ok(false);
    }
    execute(
        db,
        &format!(
            "SELECT pg_create_physical_replication_slot({}, true)",
            quote_literal(name.as_str())
        ),
    )
    .await?;
    Ok(true)
}

/// Drops a slot; returns false when there was none. Refuses an active slot: a standby is
/// using it.
pub async fn drop_slot(db: &dyn Sql, name: &Name) -> Result<bool> {
    let slots = list_slots(db).await?;
    let Some(slot) = slots.iter().find(|s| s.name == name.as_str()) else {
        return Ok(false);
    };
    if slot.active {
        return Err(PgreplError::State(format!(
            "slot {name} on {} is in use by a standby; stop that standby first",
            db.server()
        )));
    }
    execute(
        db,
        &format!(
            "SELECT pg_drop_replication_slot({})",
            quote_literal(name.as_str())
        ),
    )
    .await?;
    Ok(true)
}

/// Ends the WAL sender that holds slot `name` for a client at `client_addr`, when there is
/// one, and returns its pid. For a caller whose own earlier run died (a killed process, a
/// machine that went down): its connection may stay open on the primary until TCP or
/// `wal_sender_timeout` notices, and the slot stays "active for PID" meanwhile. Only a sender
/// for that slot and from that address is ended; anything else is left alone.
pub async fn end_stale_sender(db: &dyn Sql, name: &Name, client_addr: &str) -> Result<Option<i32>> {
    let pid = crate::sql::query_value(
        db,
        &format!(
            "SELECT s.active_pid::text FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = {} AND host(r.client_addr) = {}",
            quote_literal(name.as_str()),
            quote_literal(client_addr)
        ),
    )
    .await?
    .and_then(|p| p.parse::<i32>().ok());
    let Some(pid) = pid else { return Ok(None) };
    execute(db, &format!("SELECT pg_terminate_backend({pid}, 10000)")).await?;
    Ok(Some(pid))
}

/// Why a slot needs attention.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SlotProblem {
    /// The slot.
    pub slot: Slot,
    /// What is wrong, in words.
    pub reason: String,
}

/// Slots that are inactive, hold more than `max_retained_bytes` of WAL, or have lost WAL.
pub async fn problem_slots(db: &dyn Sql, max_retained_bytes: i64) -> Result<Vec<SlotProblem>> {
    Ok(list_slots(db)
        .await?
        .into_iter()
        .filter_map(|s| {
            let mut why = Vec::new();
            if !s.active {
                why.push("inactive: no standby uses it, and it keeps WAL".to_owned());
            }
            if let Some(b) = s.retained_bytes.filter(|b| *b > max_retained_bytes) {
                why.push(format!("keeps {} MB of WAL", b / (1024 * 1024)));
            }
            if matches!(s.wal_status.as_deref(), Some("lost") | Some("unreserved")) {
                why.push(format!(
                    "wal_status is {}: its standby needs a new clone",
                    s.wal_status.clone().unwrap_or_default()
                ));
            }
            (!why.is_empty()).then(|| SlotProblem {
                reason: why.join("; "),
                slot: s,
            })
        })
        .collect())
}
