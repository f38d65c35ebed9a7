//! The store against a temporary SQLite file and a manual clock.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::sdk::CallContext;

const T0: i64 = 1_700_000_000_000;
const TTL: i64 = 600_000;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    store: Store,
}

fn limits() -> Limits {
    Limits { notify_ttl_ms: TTL, max_notify_entries: 3, max_notify_bytes: 100 }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::open_with(&path, limits(), clock.clone()).unwrap();
    Fixture { _dir: dir, path, clock, store }
}

fn entry(id: &str, data: &str) -> NotifyEntry {
    NotifyEntry { notify_id: NotifyId::parse(id).unwrap(), corp_id: "corp".into(), data: data.into() }
}

fn id(s: &str) -> NotifyId {
    NotifyId::parse(s).unwrap()
}

#[tokio::test]
async fn notify_data_is_returned_once_then_reported_as_taken() {
    let f = fixture();
    f.store.put_notify(entry("n1", r#"{"a":1}"#)).await.unwrap();
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Ok(r#"{"a":1}"#.to_owned()));
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Taken));
    assert_eq!(f.store.notify_stats().await.unwrap(), NotifyStats { live: 0, live_bytes: 0, tombstones: 1 });
}

#[tokio::test]
async fn an_unknown_id_or_another_corps_id_is_not_found_and_takes_nothing() {
    let f = fixture();
    f.store.put_notify(entry("n1", "{}")).await.unwrap();
    assert_eq!(f.store.take_notify("corp", &id("n2")).await.unwrap(), Err(TakeError::NotFound));
    assert_eq!(f.store.take_notify("other", &id("n1")).await.unwrap(), Err(TakeError::NotFound));
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Ok("{}".to_owned()));
}

#[tokio::test]
async fn data_past_its_ttl_is_expired_and_forgotten_one_ttl_later() {
    let f = fixture();
    f.store.put_notify(entry("n1", "{}")).await.unwrap();
    f.clock.advance(TTL);
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Expired));
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Expired));
    f.clock.advance(TTL - 1);
    f.store.purge().await.unwrap();
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Expired));
    f.clock.advance(1);
    assert_eq!(f.store.purge().await.unwrap(), Purged { expired: 0, deleted: 1 });
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::NotFound));
}

#[tokio::test]
async fn the_purge_turns_expired_data_into_tombstones() {
    let f = fixture();
    f.store.put_notify(entry("n1", "0123456789")).await.unwrap();
    f.clock.advance(TTL);
    assert_eq!(f.store.purge().await.unwrap(), Purged { expired: 1, deleted: 0 });
    assert_eq!(f.store.notify_stats().await.unwrap(), NotifyStats { live: 0, live_bytes: 0, tombstones: 1 });
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Expired));
}

#[tokio::test]
async fn a_taken_tombstone_lasts_until_the_original_expiry() {
    let f = fixture();
    f.store.put_notify(entry("n1", "{}")).await.unwrap();
    f.store.take_notify("corp", &id("n1")).await.unwrap().unwrap();
    f.clock.advance(TTL - 1);
    f.store.purge().await.unwrap();
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Taken));
    f.clock.advance(1);
    f.store.purge().await.unwrap();
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::NotFound));
}

#[tokio::test]
async fn a_read_whose_reply_was_lost_is_retried_within_the_grace_and_the_data_is_then_cleared() {
    let f = fixture();
    f.store.put_notify(entry("n1", r#"{"a":1}"#)).await.unwrap();
    f.store.put_notify(entry("n2", r#"{"b":2}"#)).await.unwrap();
    // A retry of a read that never reached the store takes the entry.
    assert_eq!(f.store.retake_notify("corp", &id("n2")).await.unwrap(), Ok(r#"{"b":2}"#.to_owned()));
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Ok(r#"{"a":1}"#.to_owned()));
    // Its reply was lost: a plain read is still refused, a retry gets the same data, another corp nothing.
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Taken));
    assert_eq!(f.store.retake_notify("other", &id("n1")).await.unwrap(), Err(TakeError::NotFound));
    f.clock.advance(RETRY_GRACE_MS - 1);
    assert_eq!(f.store.retake_notify("corp", &id("n1")).await.unwrap(), Ok(r#"{"a":1}"#.to_owned()));
    // Taken data counts against no cap.
    assert_eq!(f.store.notify_stats().await.unwrap(), NotifyStats { live: 0, live_bytes: 0, tombstones: 2 });
    f.clock.advance(1);
    assert_eq!(f.store.retake_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Taken));
    // n1's data went with that refusal, n2's goes with the purge: none is left in the file.
    assert_eq!(f.store.purge().await.unwrap(), Purged { expired: 1, deleted: 0 });
    assert_eq!(f.store.retake_notify("corp", &id("n2")).await.unwrap(), Err(TakeError::Taken));
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    let left: i64 = conn.query_row("SELECT COUNT(*) FROM notify WHERE data IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_retry_grace_ends_with_the_entry() {
    let f = fixture();
    f.store.put_notify(entry("n1", "{}")).await.unwrap();
    f.clock.advance(TTL - 10);
    f.store.take_notify("corp", &id("n1")).await.unwrap().unwrap();
    f.clock.advance(10);
    assert_eq!(f.store.retake_notify("corp", &id("n1")).await.unwrap(), Err(TakeError::Taken));
}

#[tokio::test]
async fn the_entry_and_byte_caps_refuse_with_full_and_store_nothing() {
    let f = fixture();
    for i in 0..3 {
        f.store.put_notify(entry(&format!("n{i}"), "x")).await.unwrap();
    }
    let before = f.store.fingerprint().await.unwrap();
    assert!(!f.store.notify_has_room().await.unwrap());
    assert!(matches!(f.store.put_notify(entry("n9", "x")).await, Err(StoreError::Full)));
    assert_eq!(f.store.fingerprint().await.unwrap(), before);
    // Taking one frees a slot; bytes are capped too.
    f.store.take_notify("corp", &id("n0")).await.unwrap().unwrap();
    assert!(matches!(f.store.put_notify(entry("big", &"x".repeat(99))).await, Err(StoreError::Full)));
    f.store.put_notify(entry("fits", &"x".repeat(98))).await.unwrap();
}

#[tokio::test]
async fn a_reused_notify_id_is_refused_without_overwriting() {
    let f = fixture();
    f.store.put_notify(entry("n1", "first")).await.unwrap();
    assert!(f.store.put_notify(entry("n1", "second")).await.is_err());
    assert_eq!(f.store.take_notify("corp", &id("n1")).await.unwrap(), Ok("first".to_owned()));
}

#[tokio::test]
async fn notify_data_and_jobs_survive_a_reopen() {
    let f = fixture();
    f.store.put_notify(entry("n1", "kept")).await.unwrap();
    let job = f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap();
    let Enqueued::New(job_id) = job else { panic!("{job:?}") };
    assert!(f.store.claim_job(60_000).await.unwrap().is_some());
    drop(f.store);
    let store = Store::open_with(&f.path, limits(), f.clock.clone()).unwrap();
    assert_eq!(store.take_notify("corp", &id("n1")).await.unwrap(), Ok("kept".to_owned()));
    // The claim of the previous process is released, so the job resumes.
    let again = store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!((again.id, again.runs), (job_id, 2));
}

fn new_job(key: Option<&str>) -> NewJob {
    NewJob {
        kind: JobKind::Ability,
        dedupe_key: key.map(str::to_owned),
        context_prefix: None,
        ctx: CallContext { corp_id: "corp".into(), agent_id: 1, ability_id: "a".into(), job_info: "j".into() },
        payload: "{}".into(),
    }
}

#[tokio::test]
async fn a_second_enqueue_with_the_same_key_is_a_duplicate() {
    let f = fixture();
    let first = f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap();
    let Enqueued::New(id) = first else { panic!("{first:?}") };
    assert_eq!(f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap(), Enqueued::Duplicate(id));
    assert!(matches!(f.store.enqueue_job(new_job(None), 10).await.unwrap(), Enqueued::New(_)));
    assert_eq!(f.store.job_counts().await.unwrap().queued, 2);
}

#[tokio::test]
async fn enqueue_refuses_when_max_pending_jobs_are_unfinished_and_counts_them_across_a_reopen() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(None), 1).await.unwrap() else { panic!() };
    let before = f.store.fingerprint().await.unwrap();
    assert!(matches!(f.store.enqueue_job(new_job(None), 1).await, Err(StoreError::QueueFull)));
    assert_eq!(f.store.fingerprint().await.unwrap(), before);
    // A job that moves to report is still unfinished; a reopened store counts it too.
    f.store.job_to_report(unclaimed(id), 0, "r".into(), false).await.unwrap();
    let reopened = Store::open_with(&f.path, limits(), f.clock.clone()).unwrap();
    assert!(matches!(reopened.enqueue_job(new_job(None), 1).await, Err(StoreError::QueueFull)));
    // Finishing frees the slot, once: finishing again does not count twice.
    reopened.finish_job(unclaimed(id), Phase::Done).await.unwrap();
    reopened.finish_job(unclaimed(id), Phase::Failed).await.unwrap();
    assert!(matches!(reopened.enqueue_job(new_job(None), 1).await.unwrap(), Enqueued::New(_)));
    assert!(matches!(reopened.enqueue_job(new_job(None), 1).await, Err(StoreError::QueueFull)));
    assert_eq!(reopened.job(id).await.unwrap().unwrap().phase, Phase::Done, "a finished job stays as it ended");
}

#[tokio::test]
async fn a_job_moves_from_run_to_report_to_done_and_drops_its_input() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap() else { panic!() };
    let job = f.store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!((job.id, job.phase, job.runs, job.payload.as_str()), (id, Phase::Run, 1, "{}"));
    assert!(f.store.claim_job(60_000).await.unwrap().is_none(), "a claimed job is not claimed twice");
    assert_eq!(f.store.job_counts().await.unwrap(), JobCounts { queued: 0, running: 1, done: 0, failed: 0 });
    f.store.job_to_report(job.claim(), 0, "out".into(), false).await.unwrap();
    let job = f.store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!((job.phase, job.runs, job.report.clone()), (Phase::Report, 1, Some((0, "out".into()))));
    assert!(job.payload.is_empty());
    f.store.finish_job(job.claim(), Phase::Done).await.unwrap();
    let job = f.store.job(id).await.unwrap().unwrap();
    assert_eq!((job.phase, job.report), (Phase::Done, Some((0, "out".into()))), "the result stays with its key");
    assert_eq!(
        f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap(),
        Enqueued::Finished { id, report: Some((0, "out".into())) },
        "a redelivery of a finished job learns its result"
    );
    assert_eq!(f.store.job_counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 1, failed: 0 });
}

#[tokio::test]
async fn a_result_recorded_under_a_held_claim_is_not_claimable_until_a_restart_then_resumes_at_its_report() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(None), 10).await.unwrap() else { panic!() };
    let claimed = f.store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    f.store.job_to_report(claimed.claim(), 7, "out".into(), true).await.unwrap();
    assert!(f.store.claim_job(60_000).await.unwrap().is_none(), "the worker that ran it still holds it");
    assert_eq!(f.store.job_counts().await.unwrap(), JobCounts { queued: 0, running: 1, done: 0, failed: 0 });
    let reopened = Store::open_with(&f.path, limits(), f.clock.clone()).unwrap();
    let job = reopened.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!(
        (job.phase, job.runs, job.report),
        (Phase::Report, 1, Some((7, "out".into()))),
        "reported, not run again"
    );
    assert!(job.payload.is_empty());
}

#[tokio::test]
async fn a_retried_job_is_not_due_before_its_time() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(None), 10).await.unwrap() else { panic!() };
    let claimed = f.store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    f.store.retry_job(claimed.claim(), T0 + 500, 1, false).await.unwrap();
    assert!(f.store.claim_job(60_000).await.unwrap().is_none());
    assert_eq!(f.store.next_job_due_ms().await.unwrap(), Some(T0 + 500));
    f.clock.advance(500);
    let job = f.store.claim_job(60_000).await.unwrap().unwrap();
    assert_eq!((job.runs, job.attempts), (2, 1));
}

#[tokio::test]
async fn finished_jobs_are_purged_after_a_day_and_their_key_is_free_again() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap() else { panic!() };
    f.store.finish_job(unclaimed(id), Phase::Done).await.unwrap();
    f.clock.advance(FINISHED_JOB_RETENTION_MS - 1);
    f.store.purge().await.unwrap();
    assert_eq!(f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap(), Enqueued::Finished { id, report: None });
    f.clock.advance(1);
    f.store.purge().await.unwrap();
    assert!(matches!(f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap(), Enqueued::New(_)));
}

#[tokio::test]
async fn stored_notify_data_moves_the_cursor_and_the_progress_together() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(None), 10).await.unwrap() else { panic!() };
    assert_eq!(f.store.cursor("corp", "sync_msg").await.unwrap(), None);
    f.store.checkpoint_job(unclaimed(id), "p1".into(), None).await.unwrap();
    assert_eq!(f.store.cursor("corp", "sync_msg").await.unwrap(), None, "a checkpoint moves no cursor");
    assert_eq!(f.store.job(id).await.unwrap().unwrap().progress.as_deref(), Some("p1"));
    f.store
        .put_notify_for_job(entry("n1", "{}"), unclaimed(id), "p2".into(), Some(("sync_msg".into(), "C2".into())))
        .await
        .unwrap();
    assert_eq!(f.store.cursor("corp", "sync_msg").await.unwrap().as_deref(), Some("C2"));
    assert_eq!(f.store.job(id).await.unwrap().unwrap().progress.as_deref(), Some("p2"));
}

#[tokio::test]
async fn a_failed_notify_store_leaves_the_job_progress_and_cursor_untouched() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(None), 10).await.unwrap() else { panic!() };
    let big = entry("n1", &"x".repeat(101));
    let before = f.store.fingerprint().await.unwrap();
    let r = f.store.put_notify_for_job(big, unclaimed(id), "p".into(), Some(("sync_msg".into(), "C".into()))).await;
    assert!(matches!(r, Err(StoreError::Full)));
    assert_eq!(f.store.fingerprint().await.unwrap(), before);
}

/// Review finding 4: the store was created 0644 in a 0755 directory.
#[cfg(unix)]
#[tokio::test]
async fn the_store_is_private_to_its_user_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("s.sqlite");
    let store = Store::open_with(&path, limits(), Arc::new(ManualClock::new(T0))).unwrap();
    store.enqueue_job(new_job(None), 10).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_file_name("s.sqlite-wal")), 0o600);
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Store::open_with(&path, limits(), Arc::new(ManualClock::new(T0))).unwrap_err();
    assert!(err.to_string().contains("mode 0644") && err.to_string().contains("chmod 600"), "{err}");
}

/// Review finding 4: an app-supplied secret key was still in the WAL after its job finished.
#[tokio::test]
async fn a_finished_jobs_secret_is_gone_from_the_files_after_the_purge() {
    let f = fixture();
    const SECRET: &str = "SeCrEtKeY-0123456789-do-not-keep";
    let mut job = new_job(None);
    job.payload = format!(r#"{{"msg_list":[{{"secret_key":"{SECRET}"}}]}}"#);
    let Enqueued::New(_) = f.store.enqueue_job(job, 10).await.unwrap() else { panic!("not new") };
    let claimed = f.store.claim_job(60_000).await.unwrap().unwrap();
    f.store.job_to_report(claimed.claim(), 0, "{}".into(), false).await.unwrap();
    f.store.finish_job(claimed.claim(), Phase::Done).await.unwrap();
    f.store.purge().await.unwrap();
    for suffix in ["", "-wal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", f.path.display()));
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is still in {}",
            file.display()
        );
    }
}

/// The claim of a row no worker ever claimed.
fn unclaimed(id: i64) -> Claim {
    Claim { id, no: 0 }
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_is_taken_up_again_and_its_old_holder_records_nothing() {
    let f = fixture();
    let Enqueued::New(id) = f.store.enqueue_job(new_job(Some("k")), 10).await.unwrap() else { panic!() };
    let first = f.store.claim_job(1000).await.unwrap().unwrap();
    f.clock.advance(999);
    assert!(f.store.claim_job(1000).await.unwrap().is_none(), "held within its lease");
    assert!(f.store.renew_claim(first.claim(), 1000).await.unwrap(), "renewed by its holder");
    f.clock.advance(999);
    assert!(f.store.claim_job(1000).await.unwrap().is_none(), "held within the renewed lease");
    assert_eq!(f.store.next_job_due_ms().await.unwrap(), Some(T0 + 999 + 1000), "due when the lease runs out");
    f.clock.advance(1);
    let second = f.store.claim_job(1000).await.unwrap().expect("taken up once the lease ran out, without a restart");
    assert_eq!((second.id, second.runs), (id, 2));
    assert_ne!(second.claim(), first.claim());
    // The first holder lost the job: its outcome changes nothing.
    assert!(!f.store.renew_claim(first.claim(), 1000).await.unwrap());
    f.store.finish_job(first.claim(), Phase::Failed).await.unwrap();
    let put = f.store.put_notify_for_job(entry("n1", "{}"), first.claim(), "p".into(), None).await;
    assert!(matches!(put, Err(StoreError::ClaimLost)), "{put:?}");
    f.store.finish_job(second.claim(), Phase::Done).await.unwrap();
    assert_eq!(f.store.job(id).await.unwrap().unwrap().phase, Phase::Done);
    assert_eq!(f.store.job_counts().await.unwrap(), JobCounts { queued: 0, running: 0, done: 1, failed: 0 });
}

#[tokio::test]
async fn the_same_job_context_with_another_request_is_a_new_job_and_is_told_so() {
    let f = fixture();
    let keyed = |key: &str| NewJob {
        context_prefix: Some("ability:ctx1:".into()),
        ..new_job(Some(&format!("ability:ctx1:{key}")))
    };
    assert!(matches!(f.store.enqueue_job(keyed("a"), 10).await.unwrap(), Enqueued::New(_)));
    assert!(matches!(f.store.enqueue_job(keyed("b"), 10).await.unwrap(), Enqueued::NewSameContext(_)));
    assert!(matches!(f.store.enqueue_job(keyed("a"), 10).await.unwrap(), Enqueued::Duplicate(_)));
    let other = NewJob { context_prefix: Some("ability:ctx2:".into()), ..new_job(Some("ability:ctx2:a")) };
    assert!(matches!(f.store.enqueue_job(other, 10).await.unwrap(), Enqueued::New(_)), "another context");
    let near = NewJob { context_prefix: Some("ability:ctx0:".into()), ..new_job(Some("ability:ctx0:a")) };
    assert!(matches!(f.store.enqueue_job(near, 10).await.unwrap(), Enqueued::New(_)), "a neighbouring context");
}

/// Group commit: every enqueue answered `New` is already committed, as another connection to the
/// file sees it at that moment (so an acknowledgement sent after the answer never precedes its
/// row, and a crash can only lose rows nobody was told about); rows of groups still open are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_is_answered_only_once_its_group_is_committed() {
    let f = fixture();
    let reader = Arc::new(std::sync::Mutex::new(rusqlite::Connection::open(&f.path).unwrap()));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (store, reader) = (f.store.clone(), reader.clone());
            tokio::spawn(async move {
                let Enqueued::New(id) = store.enqueue_job(new_job(Some(&format!("k{i}"))), 1000).await.unwrap() else {
                    panic!("a new key is a new job")
                };
                let seen: i64 = reader
                    .lock()
                    .unwrap()
                    .query_row("SELECT COUNT(*) FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                    .unwrap();
                assert_eq!(seen, 1, "job {id} was answered before another connection could see it");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.store.job_counts().await.unwrap().queued, 300);
}

/// One group holds writes that succeed and writes that are refused: each refused one undoes only
/// itself, and the unfinished count stays exact (`max_pending` is met exactly, across a reopen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_in_a_group_undo_only_themselves_and_the_pending_count_stays_exact() {
    let f = fixture();
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let store = f.store.clone();
            // Every third one repeats a key: a duplicate, or new if it comes first.
            let key = if i % 3 == 0 { "dup".to_owned() } else { format!("k{i}") };
            tokio::spawn(async move { store.enqueue_job(new_job(Some(&key)), 50).await })
        })
        .collect();
    let (mut new, mut full, mut duplicate) = (0, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Enqueued::New(_)) => new += 1,
            Ok(Enqueued::Duplicate(_)) => duplicate += 1,
            Err(StoreError::QueueFull) => full += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(new, 50, "exactly max_pending new jobs");
    assert_eq!(new + full + duplicate, 120);
    assert_eq!(f.store.job_counts().await.unwrap().queued, 50, "no refused write left a row");
    drop(f.store);
    let reopened = Store::open_with(&f.path, limits(), f.clock.clone()).unwrap();
    assert!(matches!(reopened.enqueue_job(new_job(None), 50).await, Err(StoreError::QueueFull)));
    assert!(matches!(reopened.enqueue_job(new_job(None), 51).await.unwrap(), Enqueued::New(_)));
}

/// A group that cannot commit (another connection holds the write lock beyond the busy timeout)
/// answers every write of it with an error, and counts none of its jobs.
#[tokio::test]
async fn a_group_that_cannot_commit_fails_every_write_of_it_and_counts_nothing() {
    let f = fixture();
    drop(f.store);
    let store = Store::open_inner(&f.path, limits(), f.clock.clone(), std::time::Duration::from_millis(20)).unwrap();
    let holder = rusqlite::Connection::open(&f.path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let refused = store.enqueue_job(new_job(Some("k")), 1).await;
    assert!(matches!(refused, Err(StoreError::Sqlite(_))), "{refused:?}");
    holder.execute_batch("ROLLBACK").unwrap();
    // Not counted: the queue of one still has room, and the key was never recorded.
    assert!(matches!(store.enqueue_job(new_job(Some("k")), 1).await.unwrap(), Enqueued::New(_)));
    assert_eq!(store.job_counts().await.unwrap().queued, 1);
}

#[tokio::test]
async fn claim_jobs_claims_up_to_n_due_jobs_at_once_and_a_release_gives_them_back_uncounted() {
    let f = fixture();
    for i in 0..5 {
        f.store.enqueue_job(new_job(Some(&format!("k{i}"))), 10).await.unwrap();
    }
    let first = f.store.claim_jobs(3, 60_000).await.unwrap();
    assert_eq!(first.iter().map(|j| (j.runs, j.phase)).collect::<Vec<_>>(), vec![(1, Phase::Run); 3]);
    assert!(first.windows(2).all(|w| w[0].id < w[1].id), "in the order they were recorded");
    let rest = f.store.claim_jobs(10, 60_000).await.unwrap();
    assert_eq!(rest.len(), 2, "a claimed job is not claimed twice");
    assert!(f.store.claim_jobs(10, 60_000).await.unwrap().is_empty());
    f.store.release_jobs(first.iter().map(JobRow::claim).collect()).await.unwrap();
    let again = f.store.claim_jobs(10, 60_000).await.unwrap();
    assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), first.iter().map(|j| j.id).collect::<Vec<_>>());
    assert!(again.iter().all(|j| j.runs == 1), "a released job's unstarted run is not counted");
}

/// A result recorded under a claim that was taken over is refused (its holder must not report).
#[tokio::test]
async fn a_result_under_a_lost_claim_is_refused() {
    let f = fixture();
    f.store.enqueue_job(new_job(None), 10).await.unwrap();
    let first = f.store.claim_job(1000).await.unwrap().unwrap();
    f.clock.advance(1000);
    let second = f.store.claim_job(1000).await.unwrap().unwrap();
    let lost = f.store.job_to_report(first.claim(), 0, "r".into(), true).await;
    assert!(matches!(lost, Err(StoreError::ClaimLost)), "{lost:?}");
    f.store.job_to_report(second.claim(), 0, "r".into(), true).await.unwrap();
}
