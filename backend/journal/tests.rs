use std::time::Duration;

use super::*;
use brokerstream_event::Event;

fn config(dir: &Path) -> JournalConfig {
    JournalConfig {
        segment_bytes: 4096,
        ..JournalConfig::new(dir)
    }
}

fn metric(id: i64) -> Event {
    Event::named("metric")
        .unwrap()
        .with("metric_id", id)
        .with("name", "cpu")
        .with("value", 1.5)
}

fn ids(entries: &[Arc<Entry>]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| e.event.get("metric_id").and_then(|v| v.as_i64()).unwrap())
        .collect()
}

/// The ids of every event the cursor has left to read.
fn read_all(cursor: &mut Cursor) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let batch = cursor.read(64);
        if batch.is_empty() {
            return seen;
        }
        seen.extend(ids(&batch));
    }
}

async fn append_range(journal: &Journal, range: std::ops::RangeInclusive<i64>) -> Seq {
    journal.append(range.map(metric).collect()).await.unwrap()
}

#[tokio::test]
async fn events_survive_a_reopen_and_unacked_ones_come_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        let mut cursor = journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=10).await;
        let read = cursor.read(100);
        assert_eq!(ids(&read), (1..=10).collect::<Vec<_>>());
        cursor.ack(read[3].seq);
        journal.close();
    }
    let journal = Journal::open(config(dir.path())).unwrap();
    assert!(
        journal.recovery_report().is_clean(),
        "{:?}",
        journal.recovery_report()
    );
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(ids(&cursor.read(100)), (5..=10).collect::<Vec<_>>());
    let seq = append_range(&journal, 11..=11).await;
    assert_eq!(seq, 11, "numbering goes on");
    journal.close();
}

#[tokio::test]
async fn old_events_are_read_from_disk_with_a_tiny_memory_tail() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        memory_bytes: 1,
        ..config(dir.path())
    })
    .unwrap();
    let mut cursor = journal.cursor("slow", StartAt::Head);
    for chunk in 0..20 {
        append_range(&journal, chunk * 50 + 1..=chunk * 50 + 50).await;
    }
    assert!(journal.info().segments > 5, "{:?}", journal.info());
    assert!(journal.info().memory_tail_events <= 1);
    assert_eq!(read_all(&mut cursor), (1..=1000).collect::<Vec<_>>());
    journal.close();
}

#[tokio::test]
async fn the_memory_tail_lets_go_of_what_every_cursor_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        segment_bytes: 1 << 20,
        ..JournalConfig::new(dir.path())
    })
    .unwrap();
    let mut fast = journal.cursor("fast", StartAt::Head);
    let mut slow = journal.cursor("slow", StartAt::Head);
    append_range(&journal, 1..=100).await;
    assert_eq!(journal.info().memory_tail_events, 100);

    let read = fast.read(100);
    fast.ack(read[99].seq);
    assert_eq!(
        journal.info().memory_tail_events,
        100,
        "the slow cursor still needs all of them"
    );
    let read = slow.read(40);
    slow.ack(read[39].seq);
    assert_eq!(journal.info().memory_tail_events, 60);
    assert_eq!(ids(&slow.read(100)), (41..=100).collect::<Vec<_>>());
    slow.ack(100);
    assert_eq!(journal.info().memory_tail_events, 0);

    // Released from memory, not from the journal: a replay reads the disk.
    journal.reposition("fast", Reposition::Oldest);
    fast.rewind();
    assert_eq!(read_all(&mut fast), (1..=100).collect::<Vec<_>>());
    // New events go on through memory.
    append_range(&journal, 101..=110).await;
    assert_eq!(ids(&slow.read(100)), (101..=110).collect::<Vec<_>>());

    // What a burst grew stays allocated while events flow, and goes when
    // the service is idle.
    append_range(&journal, 111..=30_110).await;
    for cursor in [&mut fast, &mut slow] {
        assert!(!read_all(cursor).is_empty());
        cursor.ack(30_110);
    }
    assert_eq!(journal.info().memory_tail_events, 0);
    assert!(journal.lock().tail.capacity() >= 30_000);
    journal.release_idle_memory();
    assert!(journal.lock().tail.capacity() <= 2 * TAIL_SLOTS_KEPT);
    journal.close();
}

#[tokio::test]
async fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    for chunk in 0..10 {
        append_range(&journal, chunk * 50 + 1..=chunk * 50 + 50).await;
    }
    let before = journal.info().segments;
    assert!(before > 3);
    let all = cursor.read(10_000);
    cursor.ack(all.last().unwrap().seq);
    assert_eq!(journal.info().segments, 1, "only the active segment stays");
    assert_eq!(segment::list(dir.path()).unwrap().len(), 1);
    assert_eq!(journal.backlog("out").unacked, 0);
    journal.close();
}

#[tokio::test]
async fn block_policy_refuses_and_drop_oldest_counts_losses() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        max_bytes: 16 * 1024,
        ..config(dir.path())
    })
    .unwrap();
    let _stuck = journal.cursor("stuck", StartAt::Head);
    let mut refused = false;
    for chunk in 0..100 {
        match journal
            .append((chunk * 10..chunk * 10 + 10).map(metric).collect())
            .await
        {
            Ok(_) => {}
            Err(AppendError::Full { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused, "block refuses once full");
    assert!(journal.info().bytes <= 16 * 1024);
    journal.close();

    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        max_bytes: 16 * 1024,
        full: FullPolicy::DropOldest,
        ..config(dir.path())
    })
    .unwrap();
    let mut stuck = journal.cursor("stuck", StartAt::Head);
    for chunk in 0..100 {
        append_range(&journal, chunk * 10 + 1..=chunk * 10 + 10).await;
    }
    assert!(journal.info().bytes <= 16 * 1024);
    let backlog = journal.backlog("stuck");
    assert!(backlog.lost > 0);
    let held = stuck.read(100_000);
    assert_eq!(
        backlog.lost + held.len() as u64,
        1000,
        "every event is either still held or counted lost"
    );
    assert_eq!(*ids(&held).last().unwrap(), 1000);
    journal.close();
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let journal = Arc::clone(&journal);
            tokio::spawn(async move { journal.append(vec![metric(i)]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut seen = ids(&cursor.read(100));
    seen.sort();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    journal.close();
}

#[tokio::test]
async fn a_torn_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=5).await;
        journal.close();
    }
    let (_, last) = segment::list(dir.path()).unwrap().pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 7).unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let report = journal.recovery_report().clone();
    assert!(report.torn_bytes_cut > 0, "{report:?}");
    assert_eq!(report.events, 4);
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(ids(&cursor.read(10)), [1, 2, 3, 4]);
    // Ingest goes on, numbering after the cut.
    assert_eq!(append_range(&journal, 6..=6).await, 5);
    assert_eq!(ids(&cursor.read(10)), [6]);
    journal.close();
}

#[tokio::test]
async fn a_flipped_bit_quarantines_the_segment_and_counts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=10).await;
        journal.close();
    }
    let (_, last) = segment::list(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let record_len = bytes.len() / 10;
    bytes[record_len * 3 + 30] ^= 0x10; // inside the 4th record
    std::fs::write(&last, &bytes).unwrap();

    let report = check(dir.path()).unwrap();
    assert_eq!(report.events_lost, 1, "{report:?}");
    assert!(report.quarantined.is_empty(), "check changes nothing");

    let journal = Journal::open(config(dir.path())).unwrap();
    let report = journal.recovery_report().clone();
    assert_eq!(report.events_lost, 1, "{report:?}");
    assert_eq!(report.quarantined.len(), 1);
    assert!(report.quarantined[0]
        .parent()
        .unwrap()
        .ends_with("quarantine"));
    assert_eq!(journal.backlog("out").lost, 1);
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(ids(&cursor.read(20)), [1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert_eq!(append_range(&journal, 11..=11).await, 11);
    journal.close();
    // Repaired: the next start is clean.
    let journal = Journal::open(config(dir.path())).unwrap();
    assert!(
        journal.recovery_report().is_clean(),
        "{:?}",
        journal.recovery_report()
    );
    journal.close();
}

#[tokio::test]
async fn empty_and_missing_segments_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        journal.cursor("out", StartAt::Head);
        for chunk in 0..6 {
            append_range(&journal, chunk * 50 + 1..=chunk * 50 + 50).await;
        }
        journal.close();
    }
    let segments = segment::list(dir.path()).unwrap();
    assert!(segments.len() >= 4);
    // A missing segment in the middle, an empty one, both reported.
    let (missing_first, missing) = &segments[1];
    let missing_last = segments[2].0 - 1;
    std::fs::remove_file(missing).unwrap();
    std::fs::write(dir.path().join(segment::file_name(missing_first + 1)), b"").unwrap();

    let journal = Journal::open(config(dir.path())).unwrap();
    let report = journal.recovery_report().clone();
    assert_eq!(
        report.events_lost,
        missing_last - missing_first + 1,
        "{report:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.contains("missing")),
        "{report:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.contains("empty")),
        "{report:?}"
    );
    assert_eq!(
        journal.backlog("out").lost,
        missing_last - missing_first + 1
    );
    let mut cursor = journal.cursor("out", StartAt::Head);
    let seen = read_all(&mut cursor).len() as u64;
    assert_eq!(seen + (missing_last - missing_first + 1), 300);
    journal.close();
}

#[tokio::test]
async fn a_corrupt_cursor_file_replays_from_the_oldest_event() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        let mut cursor = journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=5).await;
        let read = cursor.read(2);
        cursor.ack(read[1].seq);
        journal.close();
    }
    std::fs::write(dir.path().join(cursors::FILE), b"{not json").unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    assert!(!journal.recovery_report().is_clean());
    assert_eq!(journal.info().events, 5);
    // The positions are gone with the file: an output asking for its cursor
    // starts from the oldest event held, not the head.
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(ids(&cursor.read(10)), [1, 2, 3, 4, 5]);
    journal.close();
}

#[tokio::test]
async fn a_missing_cursor_file_replays_from_the_oldest_event() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        let mut cursor = journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=3).await;
        let read = cursor.read(3);
        cursor.ack(read[2].seq);
        journal.close();
    }
    std::fs::remove_file(dir.path().join(cursors::FILE)).unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    assert!(journal
        .recovery_report()
        .problems
        .iter()
        .any(|p| p.contains("missing")));
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(ids(&cursor.read(10)), [1, 2, 3]);
    journal.close();
    // A brand-new journal is not a lost one.
    let fresh = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(fresh.path())).unwrap();
    assert!(journal.recovery_report().is_clean());
    journal.close();
}

#[tokio::test]
async fn a_renamed_cursor_keeps_its_place_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("old", StartAt::Head);
    append_range(&journal, 1..=4).await;
    let read = cursor.read(2);
    cursor.ack(read.last().unwrap().seq);
    // Read but not acknowledged: handed out again under the new name.
    cursor.read(1);
    drop(cursor);
    assert!(journal.rename_cursor("old", "new"));
    assert!(!journal.rename_cursor("old", "other"));
    assert_eq!(journal.backlog("new").unacked, 2);
    assert_eq!(journal.backlog("old").unacked, 0);
    let mut renamed = journal.cursor("new", StartAt::Head);
    assert_eq!(ids(&renamed.read(10)), [3, 4]);
    journal.close();
    drop(renamed);
    drop(journal);
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut renamed = journal.cursor("new", StartAt::Head);
    assert_eq!(ids(&renamed.read(10)), [3, 4]);
    journal.close();
}

#[tokio::test]
async fn a_copied_cursor_starts_where_its_original_acknowledged_and_spares_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("a", StartAt::Head);
    append_range(&journal, 1..=3).await;
    let read = cursor.read(1);
    cursor.ack(read[0].seq);
    assert!(journal.copy_cursor("a", "b"));
    assert!(!journal.copy_cursor("nobody", "c"));
    assert_eq!(ids(&journal.cursor("b", StartAt::Head).read(10)), [2, 3]);
    assert_eq!(journal.backlog("a").unacked, 2);
    assert_eq!(journal.retain_cursors(&["a".to_owned()]), ["b"]);
    assert_eq!(journal.backlog("b").unacked, 0);
    assert_eq!(journal.backlog("a").unacked, 2);
    journal.close();
}

#[tokio::test]
async fn reposition_replays_and_skips() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    let _keep = journal.cursor("keeper", StartAt::Head);
    append_range(&journal, 1..=3).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    append_range(&journal, 4..=6).await;
    let all = cursor.read(10);
    cursor.ack(all.last().unwrap().seq);

    journal.reposition("out", Reposition::Oldest).unwrap();
    cursor.rewind();
    assert_eq!(ids(&cursor.read(10)), [1, 2, 3, 4, 5, 6]);
    journal
        .reposition("out", Reposition::Since(middle))
        .unwrap();
    cursor.rewind();
    assert_eq!(ids(&cursor.read(10)), [4, 5, 6]);
    journal.reposition("out", Reposition::Head).unwrap();
    cursor.rewind();
    assert!(cursor.read(10).is_empty());
    assert!(journal.reposition("nobody", Reposition::Head).is_none());
    journal.close();
}

#[tokio::test]
async fn numbering_goes_on_after_every_segment_was_released() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(config(dir.path())).unwrap();
        let mut cursor = journal.cursor("out", StartAt::Head);
        for chunk in 0..5 {
            append_range(&journal, chunk * 50 + 1..=chunk * 50 + 50).await;
        }
        let all = cursor.read(1000);
        cursor.ack(all.last().unwrap().seq);
        journal.close();
    }
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    assert_eq!(append_range(&journal, 251..=251).await, 251);
    assert_eq!(ids(&cursor.read(10)), [251]);
    journal.close();
}

#[tokio::test]
async fn wait_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("a", StartAt::Head);
    let j = Arc::clone(&journal);
    let waiter = tokio::spawn(async move {
        cursor.wait().await;
        cursor.read(10).len()
    });
    tokio::task::yield_now().await;
    j.append(vec![metric(1)]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
    journal.close();
}

#[tokio::test]
async fn fsync_policies_all_deliver() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(5),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(JournalConfig {
            fsync,
            ..config(dir.path())
        })
        .unwrap();
        let mut cursor = journal.cursor("out", StartAt::Head);
        append_range(&journal, 1..=100).await;
        assert_eq!(cursor.read(1000).len(), 100, "{fsync:?}");
        journal.close();
    }
}

#[tokio::test]
async fn a_full_journal_takes_events_again_once_outputs_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        max_bytes: 2000,
        ..config(dir.path())
    })
    .unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    let mut next = 1;
    loop {
        match journal.append(vec![metric(next)]).await {
            Ok(_) => next += 1,
            Err(AppendError::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(next > 10);
    // Everything, the active segment included, is acknowledged: room again.
    let all = cursor.read(1000);
    cursor.ack(all.last().unwrap().seq);
    journal.append(vec![metric(next)]).await.unwrap();
    assert_eq!(ids(&cursor.read(10)), [next]);
    journal.close();
}

/// Appends reuse their record buffers and, under `always`, one write covers
/// several of them: whatever the mix of batch sizes, every record on disk
/// must hold its own event and a valid checksum.
#[tokio::test]
async fn batches_of_every_size_read_back_from_disk_intact() {
    fn event(id: i64) -> Event {
        // Sizes vary so that a reused buffer holds longer stale bytes.
        metric(id).with("name", "x".repeat((id as usize * 37) % 300))
    }
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Journal::open(JournalConfig {
                fsync,
                memory_bytes: 1,
                ..config(dir.path())
            })
            .unwrap()
        };
        let journal = open();
        let mut cursor = journal.cursor("out", StartAt::Head);
        let sizes = [40, 1, 7, 0, 25, 3, 60, 2];
        let mut first = 1;
        let mut tasks = Vec::new();
        for size in sizes {
            let batch: Vec<Event> = (first..first + size).map(event).collect();
            first += size;
            let journal = Arc::clone(&journal);
            tasks.push(tokio::spawn(async move { journal.append(batch).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(cursor.read(1000).len() as i64, first - 1, "{fsync:?}");
        journal.close();
        drop(cursor);
        drop(journal);

        let journal = open();
        let report = journal.recovery_report();
        assert!(report.is_clean(), "{fsync:?}: {report:?}");
        let mut cursor = journal.cursor("reader", StartAt::Oldest);
        let mut read: Vec<Event> = cursor
            .read(1000)
            .iter()
            .map(|entry| entry.event.clone())
            .collect();
        read.sort_by_key(|e| e.get("metric_id").and_then(|v| v.as_i64()));
        assert_eq!(read, (1..first).map(event).collect::<Vec<_>>(), "{fsync:?}");
        journal.close();
    }
}

#[test]
fn journal_health_follows_the_fill_and_the_full_policy() {
    let state = |ratio, acting, policy| journal_health(ratio, 0.8, acting, policy).state;
    assert_eq!(state(0.0, false, FullPolicy::Block), HealthState::Ok);
    assert_eq!(state(0.8, false, FullPolicy::Block), HealthState::Ok);
    assert_eq!(state(0.81, false, FullPolicy::Block), HealthState::Degraded);
    assert_eq!(
        state(1.0, false, FullPolicy::DropOldest),
        HealthState::Degraded
    );
    assert_eq!(state(0.99, true, FullPolicy::Block), HealthState::Failing);
    assert_eq!(
        state(0.9, true, FullPolicy::DropOldest),
        HealthState::Failing
    );
    let block = journal_health(0.99, 0.8, true, FullPolicy::Block);
    assert!(block.reason.contains("refused"), "{}", block.reason);
    let drop = journal_health(0.9, 0.8, true, FullPolicy::DropOldest);
    assert!(drop.reason.contains("dropped"), "{}", drop.reason);
    let degraded = journal_health(0.85, 0.8, false, FullPolicy::Block);
    assert!(degraded.reason.contains("85 %"), "{}", degraded.reason);
}

#[tokio::test]
async fn info_reports_the_fill_the_holders_and_a_refusing_full_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        max_bytes: 16 * 1024,
        ..config(dir.path())
    })
    .unwrap();
    let mut fast = journal.cursor("fast", StartAt::Head);
    let _stuck = journal.cursor("stuck", StartAt::Head);
    let info = journal.info();
    assert_eq!(info.health.state, HealthState::Ok);
    assert_eq!(info.oldest_age_secs, None);
    assert!(info.holding.is_empty());
    let mut refused = false;
    for chunk in 0..100 {
        match journal
            .append((chunk * 10..chunk * 10 + 10).map(metric).collect())
            .await
        {
            Ok(seq) => {
                fast.read(100);
                fast.ack(seq);
            }
            Err(AppendError::Full { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused);
    let info = journal.info();
    assert!(info.fill_ratio > 0.8 && info.fill_ratio <= 1.0, "{info:?}");
    assert_eq!(info.health.state, HealthState::Failing, "{info:?}");
    assert!(info.full_refusals >= 1);
    assert_eq!(info.oldest_age_secs, Some(0));
    assert_eq!(
        info.holding,
        vec![Holding {
            name: "stuck".into(),
            unacked: info.head_seq
        }]
    );
    journal.close();
}

fn encoded(range: std::ops::RangeInclusive<i64>) -> EncodedBatch {
    let mut batch = EncodedBatch::default();
    for id in range {
        batch.push(&metric(id));
    }
    batch
}

#[tokio::test]
async fn an_encoded_batch_decodes_only_the_tail_it_keeps_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        memory_bytes: 4096,
        ..config(dir.path())
    })
    .unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    append_range(&journal, 1..=5).await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    let hook: BeforePublish = Box::new(move |records, ends| {
        counted.store(
            payloads(records, ends).count(),
            std::sync::atomic::Ordering::SeqCst,
        );
    });
    let last = journal
        .append_encoded(encoded(6..=500), Some(hook))
        .await
        .unwrap();
    assert_eq!(last, 500);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 495);
    {
        let state = journal.lock();
        assert!(state.tail.len() < 495, "{} in the tail", state.tail.len());
        assert!(state.tail_bytes <= 4096);
        assert_eq!(state.tail.back().map(|e| e.seq), Some(500));
        let first = state.tail.front().map_or(0, |e| e.seq);
        let contiguous = state
            .tail
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == first + i as u64);
        assert!(contiguous);
    }
    assert_eq!(read_all(&mut cursor), (1..=500).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_refused_encoded_batch_runs_no_hook_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig {
        max_bytes: 8192,
        ..config(dir.path())
    })
    .unwrap();
    let _cursor = journal.cursor("out", StartAt::Head);
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let hook: BeforePublish =
        Box::new(move |_, _| flag.store(true, std::sync::atomic::Ordering::SeqCst));
    let refused = journal.append_encoded(encoded(1..=1000), Some(hook)).await;
    assert!(
        matches!(refused, Err(AppendError::Full { .. })),
        "{refused:?}"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(journal.info().events, 0);
}

#[tokio::test]
async fn recent_events_are_the_newest_that_pass_oldest_first_and_move_no_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    let mut cursor = journal.cursor("out", StartAt::Head);
    append_range(&journal, 1..=10).await;
    let even = |e: &Event| e.get("metric_id").and_then(|v| v.as_i64()).unwrap_or(1) % 2 == 0;
    assert_eq!(ids(&journal.recent(3, even)), [6, 8, 10]);
    assert_eq!(ids(&journal.recent(100, even)), [2, 4, 6, 8, 10]);
    assert!(journal.recent(5, |_| false).is_empty());
    assert_eq!(read_all(&mut cursor), (1..=10).collect::<Vec<_>>());
    journal.close();
}

#[tokio::test]
async fn recent_events_every_output_acknowledged_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(config(dir.path())).unwrap();
    // No cursor: nothing waits for these, so the memory tail lets them go.
    append_range(&journal, 1..=30).await;
    assert_eq!(journal.info().memory_tail_events, 0);
    let even = |e: &Event| e.get("metric_id").and_then(|v| v.as_i64()).unwrap_or(1) % 2 == 0;
    let found = ids(&journal.recent(4, even));
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}");
    assert!(found.iter().all(|id| id % 2 == 0), "{found:?}");
    assert_eq!(
        *found.last().unwrap(),
        30,
        "the newest come first: {found:?}"
    );
    journal.close();
}
