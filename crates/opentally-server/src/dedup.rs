//! Exact deduplication on `(project, messageId)` over a window of days.
//!
//! Ids are 128-bit hashes, bucketed by the day they were received. Today's and yesterday's
//! buckets live in memory; older days are sorted files on disk with a Bloom filter in memory, so
//! memory grows with one day's traffic, not with the window. New ids are appended to their day's
//! file a few thousand at a time, without a sync; a checkpoint syncs the files and records the log
//! position they cover. On start the index loads the files and replays the log after the
//! checkpoint. Only the writer thread touches the index, so it needs no locks.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use opentally_log::LogPos;

/// The dedup key of a message.
pub fn message_hash(project_id: i64, message_id: &str) -> u128 {
    // Hashed as one slice: on the stack for the usual ids (a UUID is 36 bytes).
    let id = message_id.as_bytes();
    let mut stack = [0u8; 128];
    let mut heap = Vec::new();
    let buf = if id.len() <= stack.len() - 8 {
        &mut stack[..8 + id.len()]
    } else {
        heap.resize(8 + id.len(), 0);
        &mut heap[..]
    };
    buf[..8].copy_from_slice(&project_id.to_le_bytes());
    buf[8..].copy_from_slice(id);
    xxhash_rust::xxh3::xxh3_128(buf)
}

/// One day's ids in memory: 16 bytes an id and up to an eighth more (plus 2.2 MiB a day), where a
/// hash set of them took 19–39 (its tables double, so they are between 44 % and 88 % full).
///
/// The ids are split by their top bits into partitions, each a sorted vector and a short list of
/// ids not yet merged into it. The ids are uniform hashes, so the partitions stay even: a lookup
/// is a scan of the short list and a search in one partition, and merging the list in moves at
/// most one partition, never the whole day.
#[derive(Debug, Default)]
struct DaySet {
    parts: Vec<Partition>,
    len: usize,
}

#[derive(Debug, Default)]
struct Partition {
    sorted: Vec<u128>,
    recent: Vec<u128>,
}

/// Partitions of a day: 4,096, taking 192 KiB and, once each has listed an id, 2 MiB of lists.
const PARTITION_BITS: u32 = 12;
/// Ids a partition lists before they are merged into its sorted ids.
const RECENT_IDS: usize = 32;

impl Partition {
    fn contains(&self, h: u128) -> bool {
        self.recent.contains(&h) || self.in_sorted(h)
    }

    /// Below the partition's top bits the ids are uniform, so where `h` would sit is known to
    /// within a few places: the search starts there and widens until it brackets `h`, touching a
    /// cache line or two where a binary search from the middle would touch several.
    fn in_sorted(&self, h: u128) -> bool {
        let s = &self.sorted;
        if s.is_empty() {
            return false;
        }
        #[allow(clippy::cast_possible_truncation)]
        let below_top = ((h << PARTITION_BITS) >> 64) as u64;
        #[allow(clippy::cast_possible_truncation)]
        let guess = ((u128::from(below_top) * s.len() as u128) >> 64) as usize;
        let (mut lo, mut hi);
        match s[guess].cmp(&h) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => {
                // Everything up to `lo` is below `h`.
                lo = guess + 1;
                let mut step = 1;
                loop {
                    let probe = guess + step;
                    if probe >= s.len() {
                        hi = s.len();
                        break;
                    }
                    if s[probe] >= h {
                        hi = probe + 1;
                        break;
                    }
                    lo = probe + 1;
                    step *= 2;
                }
            }
            std::cmp::Ordering::Greater => {
                // Everything from `hi` on is above `h`.
                hi = guess;
                let mut step = 1;
                loop {
                    if step > guess {
                        lo = 0;
                        break;
                    }
                    let probe = guess - step;
                    if s[probe] <= h {
                        lo = probe;
                        break;
                    }
                    hi = probe;
                    step *= 2;
                }
            }
        }
        s[lo..hi].binary_search(&h).is_ok()
    }

    fn merge_recent(&mut self) {
        self.recent.sort_unstable();
        let (old, add) = (self.sorted.len(), self.recent.len());
        // Grow by an eighth at a time, not by doubling: the slack is what memory a day's ids
        // take beyond their 16 bytes.
        if self.sorted.capacity() < old + add {
            self.sorted.reserve_exact(add.max(old / 8));
        }
        self.sorted.resize(old + add, 0);
        // Merged from the back, in place.
        let (mut i, mut j, mut k) = (old, add, old + add);
        while j > 0 {
            if i > 0 && self.sorted[i - 1] > self.recent[j - 1] {
                self.sorted[k - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k - 1] = self.recent[j - 1];
                j -= 1;
            }
            k -= 1;
        }
        self.recent.clear();
    }
}

impl DaySet {
    fn partition(h: u128) -> usize {
        #[allow(clippy::cast_possible_truncation)]
        let top = (h >> (128 - PARTITION_BITS)) as usize;
        top
    }

    /// Adds `h`; false if it was there already.
    fn insert(&mut self, h: u128) -> bool {
        if self.contains(h) {
            return false;
        }
        self.add_absent(h);
        true
    }

    /// Adds `h`, which the caller knows is not there.
    fn add_absent(&mut self, h: u128) {
        if self.parts.is_empty() {
            self.parts
                .resize_with(1 << PARTITION_BITS, Partition::default);
        }
        let p = &mut self.parts[DaySet::partition(h)];
        if p.recent.capacity() == 0 {
            p.recent.reserve_exact(RECENT_IDS);
        }
        p.recent.push(h);
        if p.recent.len() == RECENT_IDS {
            p.merge_recent();
        }
        self.len += 1;
    }

    fn contains(&self, h: u128) -> bool {
        !self.parts.is_empty() && self.parts[DaySet::partition(h)].contains(h)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.sorted.iter().chain(&p.recent).copied())
    }
}

const BLOOM_BITS_PER_ID: usize = 10;
const BLOOM_PROBES: u32 = 7;

/// A day on disk: a sorted file of ids and a Bloom filter over them.
#[derive(Debug)]
struct SealedDay {
    path: PathBuf,
    count: u64,
    bloom: Vec<u64>,
}

fn bloom_positions(h: u128, bits: usize) -> impl Iterator<Item = usize> {
    #[allow(clippy::cast_possible_truncation)]
    let (a, b) = (h as u64, (h >> 64) as u64 | 1);
    (0..u64::from(BLOOM_PROBES)).map(move |i| {
        #[allow(clippy::cast_possible_truncation)]
        let p = (a.wrapping_add(i.wrapping_mul(b)) % bits as u64) as usize;
        p
    })
}

impl SealedDay {
    /// Loads a day file, sorting it first if checkpoints appended to it unsorted.
    fn load(path: PathBuf) -> io::Result<SealedDay> {
        let mut bytes = fs::read(&path)?;
        let sorted = bytes
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
            .is_sorted_by(|a, b| a < b);
        if !sorted {
            bytes = sorted_bytes(
                bytes
                    .chunks_exact(16)
                    .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))),
            );
            write_atomically(&path, &bytes)?;
        }
        let n = bytes.len() / 16;
        let bits = (n * BLOOM_BITS_PER_ID).max(64);
        let mut bloom = vec![0u64; bits.div_ceil(64)];
        for chunk in bytes.chunks_exact(16) {
            let h = u128::from_le_bytes(chunk.try_into().expect("16 bytes"));
            for p in bloom_positions(h, bloom.len() * 64) {
                bloom[p / 64] |= 1 << (p % 64);
            }
        }
        Ok(SealedDay {
            path,
            count: n as u64,
            bloom,
        })
    }

    fn contains(&self, h: u128) -> io::Result<bool> {
        let bits = self.bloom.len() * 64;
        if !bloom_positions(h, bits).all(|p| self.bloom[p / 64] & (1 << (p % 64)) != 0) {
            return Ok(false);
        }
        // Binary search in the file, reading one id per probe.
        let mut file = File::open(&self.path)?;
        let (mut lo, mut hi) = (0u64, self.count);
        let mut buf = [0u8; 16];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            file.seek(SeekFrom::Start(mid * 16))?;
            file.read_exact(&mut buf)?;
            let v = u128::from_le_bytes(buf);
            match v.cmp(&h) {
                std::cmp::Ordering::Equal => return Ok(true),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(false)
    }
}

/// The dedup index.
#[derive(Debug)]
pub struct DedupIndex {
    dir: PathBuf,
    window_days: i64,
    memory: BTreeMap<i64, DaySet>,
    sealed: BTreeMap<i64, SealedDay>,
    /// The log position that the files on disk cover.
    checkpoint: LogPos,
    /// Ids inserted since they were last written out, by day. They are appended to the day files
    /// once [`SPILL_IDS`] wait, so this list stays small however long a checkpoint takes to come.
    pending: BTreeMap<i64, Vec<u128>>,
    /// The day files of the days in memory, open for appending, with the length written so far.
    files: BTreeMap<i64, DayFile>,
    /// Ids written to the day files since the last checkpoint: a restart replays them from the log.
    unsynced_ids: usize,
}

/// A day file being appended to. Each write goes to the offset after the last complete one, so a
/// write that fails half-way is overwritten by the next, never followed by it.
#[derive(Debug)]
struct DayFile {
    file: File,
    len: u64,
    synced: bool,
}

/// Ids written to the day files at a time (64 KiB).
const SPILL_IDS: usize = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    pos: LogPos,
}

fn day_path(dir: &Path, day: i64) -> PathBuf {
    dir.join(format!("{day}.ids"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(path.parent().expect("inside the dedup dir"))?.sync_all()
}

impl DedupIndex {
    /// Loads the index from `dir`; the caller then replays the log from [`Self::checkpoint`].
    pub fn open(dir: &Path, window_days: u32, today: i64) -> io::Result<DedupIndex> {
        fs::create_dir_all(dir)?;
        let checkpoint = match fs::read(dir.join("checkpoint.json")) {
            Ok(b) => serde_json::from_slice::<Checkpoint>(&b)
                .map(|c| c.pos)
                .unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => LogPos::default(),
            Err(e) => return Err(e),
        };
        let mut index = DedupIndex {
            dir: dir.to_owned(),
            window_days: i64::from(window_days),
            memory: BTreeMap::new(),
            sealed: BTreeMap::new(),
            checkpoint,
            pending: BTreeMap::new(),
            files: BTreeMap::new(),
            unsynced_ids: 0,
        };
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(day) = name
                .to_string_lossy()
                .strip_suffix(".ids")
                .and_then(|d| d.parse::<i64>().ok())
            else {
                continue;
            };
            let path = day_path(dir, day);
            if day >= today - 1 {
                let bytes = fs::read(&path)?;
                let set = index.memory.entry(day).or_default();
                for c in bytes.chunks_exact(16) {
                    set.insert(u128::from_le_bytes(c.try_into().expect("16 bytes")));
                }
            } else {
                index.sealed.insert(day, SealedDay::load(path)?);
            }
        }
        index.expire(today)?;
        Ok(index)
    }

    /// The log position after which records must be replayed into the index.
    pub fn checkpoint(&self) -> LogPos {
        self.checkpoint
    }

    pub fn contains(&self, h: u128) -> io::Result<bool> {
        if self.memory.values().any(|s| s.contains(h)) {
            return Ok(true);
        }
        for day in self.sealed.values() {
            if day.contains(h)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds an id. Only ids of events already durable in the log may be inserted: they reach the
    /// day files before the log position that covers them is checkpointed.
    pub fn insert(&mut self, day: i64, h: u128) {
        if self.memory.entry(day).or_default().insert(h) {
            self.pending.entry(day).or_default().push(h);
        }
    }

    /// Adds an id that [`Self::contains`] has just not found (the writer's case), without looking
    /// for it again.
    pub fn insert_absent(&mut self, day: i64, h: u128) {
        self.memory.entry(day).or_default().add_absent(h);
        self.pending.entry(day).or_default().push(h);
    }

    /// Ids inserted since the last checkpoint, written out or not: what a restart would replay.
    pub fn ids_since_checkpoint(&self) -> usize {
        self.unsynced_ids + self.pending_ids()
    }

    fn pending_ids(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Appends the waiting ids to their day files, without a sync, once enough wait. On an error
    /// they stay in the list for the next try.
    pub fn spill(&mut self) -> io::Result<()> {
        if self.pending_ids() < SPILL_IDS {
            return Ok(());
        }
        self.write_pending()
    }

    fn write_pending(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for (day, ids) in &mut self.pending {
            if ids.is_empty() {
                continue;
            }
            let f = match self.files.entry(*day) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let file = fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(day_path(&self.dir, *day))?;
                    // A crash in the middle of an append leaves part of an id, never counted:
                    // the next append overwrites it.
                    let len = file.metadata()?.len() / 16 * 16;
                    e.insert(DayFile {
                        file,
                        len,
                        synced: true,
                    })
                }
            };
            bytes.clear();
            bytes.extend(ids.iter().flat_map(|h| h.to_le_bytes()));
            f.synced = false;
            f.file.write_all_at(&bytes, f.len)?;
            f.len += bytes.len() as u64;
            self.unsynced_ids += ids.len();
            ids.clear();
        }
        Ok(())
    }

    /// Ids held in memory (today and yesterday, plus any day not yet sealed).
    pub fn ids_in_memory(&self) -> usize {
        self.memory.values().map(DaySet::len).sum()
    }

    /// Seals days older than yesterday to disk and forgets days that left the window.
    pub fn expire(&mut self, today: i64) -> io::Result<()> {
        let old: Vec<i64> = self.memory.range(..today - 1).map(|(d, _)| *d).collect();
        for day in old {
            let set = self.memory.remove(&day).expect("listed above");
            self.pending.remove(&day);
            // The sealed file replaces the appended one, which holds nothing the set does not.
            self.files.remove(&day);
            let path = day_path(&self.dir, day);
            write_atomically(&path, &sorted_bytes(set.iter()))?;
            self.sealed.insert(day, SealedDay::load(path)?);
        }
        let gone: Vec<i64> = self
            .sealed
            .range(..today - self.window_days)
            .map(|(d, _)| *d)
            .collect();
        for day in gone {
            if let Some(s) = self.sealed.remove(&day) {
                fs::remove_file(&s.path)?;
            }
        }
        Ok(())
    }

    /// Appends the ids not yet written to their day files, syncs the files, then records `pos`
    /// (the log position they cover). A crash between the two only means a longer replay, whose
    /// ids are appended again: repeats are harmless and removed when the day is sealed.
    pub fn write_checkpoint(&mut self, pos: LogPos) -> io::Result<()> {
        self.write_pending()?;
        for f in self.files.values_mut() {
            if !f.synced {
                f.file.sync_data()?;
                f.synced = true;
            }
        }
        let body = serde_json::to_vec(&Checkpoint { pos }).expect("serialisable");
        write_atomically(&self.dir.join("checkpoint.json"), &body)?;
        self.checkpoint = pos;
        self.unsynced_ids = 0;
        Ok(())
    }
}

/// The ids sorted, without repeats, as the bytes of a sealed day file.
fn sorted_bytes(ids: impl Iterator<Item = u128>) -> Vec<u8> {
    let mut ids: Vec<u128> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().flat_map(|h| h.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_memory_in_sealed_days_and_not_after_the_window() {
        let dir = std::env::temp_dir().join(format!("opentally-dedup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut idx = DedupIndex::open(&dir, 7, 100).unwrap();
        let ids: Vec<u128> = (0..1000)
            .map(|i| message_hash(1, &format!("m{i}")))
            .collect();
        for h in &ids[..500] {
            idx.insert(100, *h);
        }
        assert!(idx.contains(ids[3]).unwrap());
        assert!(!idx.contains(ids[700]).unwrap());
        // Three days later, day 100 is sealed to disk and still found.
        idx.expire(103).unwrap();
        assert_eq!(idx.ids_in_memory(), 0);
        assert!(ids[..500].iter().all(|h| idx.contains(*h).unwrap()));
        assert!(ids[500..].iter().all(|h| !idx.contains(*h).unwrap()));
        // A reopened index finds it too.
        idx.write_checkpoint(LogPos {
            segment: 2,
            offset: 40,
        })
        .unwrap();
        let idx = DedupIndex::open(&dir, 7, 103).unwrap();
        assert_eq!(
            idx.checkpoint(),
            LogPos {
                segment: 2,
                offset: 40
            }
        );
        assert!(idx.contains(ids[10]).unwrap());
        // Past the window the day is dropped.
        let mut idx = DedupIndex::open(&dir, 7, 108).unwrap();
        idx.expire(108).unwrap();
        assert!(!idx.contains(ids[10]).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checkpoints_append_and_a_later_start_seals_the_unsorted_file() {
        let dir = std::env::temp_dir().join(format!("opentally-dedup-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ids: Vec<u128> = (0..300)
            .map(|i| message_hash(3, &format!("c{i}")))
            .collect();
        let mut idx = DedupIndex::open(&dir, 7, 50).unwrap();
        for h in &ids[..100] {
            idx.insert(50, *h);
        }
        idx.write_checkpoint(LogPos {
            segment: 0,
            offset: 10,
        })
        .unwrap();
        for h in &ids[100..200] {
            idx.insert(50, *h);
        }
        idx.insert(50, ids[0]);
        idx.write_checkpoint(LogPos {
            segment: 0,
            offset: 20,
        })
        .unwrap();
        assert_eq!(
            fs::metadata(day_path(&dir, 50)).unwrap().len(),
            200 * 16,
            "appends only what is new"
        );
        // The same day, reopened: in memory again.
        let idx = DedupIndex::open(&dir, 7, 50).unwrap();
        assert_eq!(idx.ids_in_memory(), 200);
        // Days later the unsorted file is sorted on load and searched on disk.
        let idx = DedupIndex::open(&dir, 7, 53).unwrap();
        assert_eq!(idx.ids_in_memory(), 0);
        assert!(ids[..200].iter().all(|h| idx.contains(*h).unwrap()));
        assert!(ids[200..].iter().all(|h| !idx.contains(*h).unwrap()));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Ids go to their day file once a few thousand wait, not only at a checkpoint, so the list of
    /// ids not yet written stays small. A crash that cuts an append short leaves part of an id,
    /// which is never read as one, and later appends overwrite it.
    #[test]
    fn ids_are_written_out_between_checkpoints_and_a_torn_append_is_dropped() {
        let dir =
            std::env::temp_dir().join(format!("opentally-dedup-spill-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ids: Vec<u128> = (0..SPILL_IDS + 10)
            .map(|i| message_hash(4, &format!("s{i}")))
            .collect();
        let mut idx = DedupIndex::open(&dir, 7, 60).unwrap();
        for h in &ids[..SPILL_IDS - 1] {
            idx.insert(60, *h);
        }
        idx.spill().unwrap();
        assert!(!day_path(&dir, 60).exists(), "too few ids to write");
        idx.insert(60, ids[SPILL_IDS - 1]);
        idx.spill().unwrap();
        assert_eq!(idx.pending_ids(), 0);
        assert_eq!(idx.ids_since_checkpoint(), SPILL_IDS);
        assert_eq!(
            fs::metadata(day_path(&dir, 60)).unwrap().len(),
            (SPILL_IDS * 16) as u64
        );
        assert_eq!(idx.checkpoint(), LogPos::default(), "no checkpoint yet");
        drop(idx);

        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(day_path(&dir, 60))
            .unwrap();
        f.write_all(&ids[SPILL_IDS].to_le_bytes()[..5]).unwrap();
        drop(f);
        let mut idx = DedupIndex::open(&dir, 7, 60).unwrap();
        assert_eq!(idx.ids_in_memory(), SPILL_IDS);
        for h in &ids[SPILL_IDS..] {
            idx.insert(60, *h);
        }
        idx.write_checkpoint(LogPos {
            segment: 1,
            offset: 7,
        })
        .unwrap();
        assert_eq!(idx.ids_since_checkpoint(), 0);
        assert_eq!(
            fs::metadata(day_path(&dir, 60)).unwrap().len(),
            ((SPILL_IDS + 10) * 16) as u64
        );
        // Sealed days later, the file is read as whole ids: every one is found, no other.
        let idx = DedupIndex::open(&dir, 7, 63).unwrap();
        assert!(ids.iter().all(|h| idx.contains(*h).unwrap()));
        assert!(!idx.contains(message_hash(4, "other")).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A day's set answers as a hash set of the same ids would, and takes little more than their
    /// 16 bytes each.
    #[test]
    fn a_days_ids_are_found_exactly_and_held_in_little_more_than_16_bytes_each() {
        let mut set = DaySet::default();
        let mut model = std::collections::HashSet::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            // xorshift: uniform enough for ids that are hashes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ids = Vec::new();
        for _ in 0..300_000 {
            let h = (u128::from(next()) << 64) | u128::from(next());
            ids.push(h);
            assert_eq!(set.insert(h), model.insert(h));
        }
        // Every id again, and as many that were never inserted.
        for h in &ids {
            assert!(!set.insert(*h));
            assert!(set.contains(*h));
            assert!(!set.contains(h ^ 1));
        }
        assert_eq!(set.len(), 300_000);
        let mut listed: Vec<u128> = set.iter().collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed.len(), 300_000);
        let bytes: usize = set
            .parts
            .iter()
            .map(|p| (p.sorted.capacity() + p.recent.capacity()) * 16)
            .sum();
        let fixed = (1 << PARTITION_BITS) * RECENT_IDS * 16;
        assert!(
            bytes <= 300_000 * 16 * 9 / 8 + fixed,
            "{bytes} bytes for 300k ids"
        );
    }

    #[test]
    fn the_same_message_id_in_two_projects_is_two_keys() {
        assert_ne!(message_hash(1, "m"), message_hash(2, "m"));
    }

    /// The index on disk holds these keys: they stay the XXH3-128 of the project id's 8 bytes
    /// and the id's, whether the id fits the stack buffer or not.
    #[test]
    fn message_hashes_stay_what_earlier_versions_stored() {
        for id in [
            "",
            "m",
            &"x".repeat(120),
            &"y".repeat(121),
            &"z".repeat(500),
        ] {
            let mut joined = (-9i64).to_le_bytes().to_vec();
            joined.extend_from_slice(id.as_bytes());
            assert_eq!(message_hash(-9, id), xxhash_rust::xxh3::xxh3_128(&joined));
        }
        assert_eq!(
            message_hash(1, "0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60"),
            0x1a40_4495_8af8_4949_d275_ddd8_b867_1a95
        );
    }
}
