//! Reading the per-fan waiting rooms of snapshot formats 1 to 3.
//!
//! Owns: the old layout (one record per fan) and its conversion to the
//! watermark room. Must not: be used for anything but decoding an old
//! snapshot. Conversion keeps what a fan can still use: admitted fans stay
//! admitted until their lapse (as shoppers, in rounds of their lapse time);
//! fans still waiting lose their place (their old tokens carry no
//! position, so no new token could name it) and join again.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::waiting_room::{Round, WaitingRoom};

#[derive(Deserialize)]
enum OldFan {
    PendingShuffle,
    Waiting {
        #[allow(dead_code)]
        seq: u64,
    },
    Admitted {
        until_ms: u64,
    },
    Done,
    Lapsed,
    Left,
}

#[derive(Deserialize)]
struct OldWaitingRoom {
    admit_batch: u32,
    fans: BTreeMap<String, OldFan>,
    #[allow(dead_code)]
    pending: Vec<String>,
    #[allow(dead_code)]
    waiting: BTreeMap<u64, String>,
    #[allow(dead_code)]
    next_seq: u64,
    #[allow(dead_code)]
    shopping: u32,
}

impl From<OldWaitingRoom> for WaitingRoom {
    fn from(old: OldWaitingRoom) -> WaitingRoom {
        let mut room = WaitingRoom::new(old.admit_batch);
        let mut rounds: BTreeMap<u64, u32> = BTreeMap::new();
        for (user, fan) in old.fans {
            match fan {
                OldFan::Admitted { until_ms } => {
                    *rounds.entry(until_ms).or_default() += 1;
                    room.record_shopper(&user, until_ms);
                }
                OldFan::PendingShuffle
                | OldFan::Waiting { .. }
                | OldFan::Done
                | OldFan::Lapsed
                | OldFan::Left => {}
            }
        }
        room.rounds = rounds
            .into_iter()
            .map(|(until_ms, acted)| Round {
                upto_places: 0,
                until_ms,
                grace_until_ms: 0,
                admitted: 0,
                acted,
                finished: 0,
            })
            .collect();
        room
    }
}

/// `deserialize_with` of `Event::queue`: the old per-fan layout, converted,
/// when a snapshot older than format 4 is decoded.
pub(crate) fn decode<'de, D>(d: D) -> Result<Option<WaitingRoom>, D::Error>
where
    D: Deserializer<'de>,
{
    if crate::snapshot::decoding_version() < 4 {
        let old = Option::<OldWaitingRoom>::deserialize(d)?;
        return Ok(old.map(WaitingRoom::from));
    }
    Option::<WaitingRoom>::deserialize(d)
}
