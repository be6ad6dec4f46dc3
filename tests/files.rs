//! Files as task data: arguments read inside the task, results written to files, chunks
//! saved and loaded, and checkpoints that let a killed program resume.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dagger::prelude::*;
use dagger::storage::{self, StorageError};
use dagger::File;

fn ctx() -> Context {
    Context::builder().threads(2).gpus(false).build().unwrap()
}

#[test]
fn a_file_argument_is_read_when_the_task_runs_and_a_missing_one_names_its_path() {
    let dir = common::scratch("files-test", "arg");
    let ctx = ctx();
    let path = dir.join("words.txt");
    let words = File::open(&path, |p| {
        Ok(std::fs::read_to_string(p)?
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>())
    });
    // Not there yet when spawned; written by a task the reader waits for.
    let p2 = path.clone();
    let gate = ctx.spawn(move || std::fs::write(&p2, "a bb ccc").unwrap(), ());
    let lens = ctx.spawn(
        |_: (), w: Vec<String>| w.iter().map(String::len).collect::<Vec<_>>(),
        (&gate, &words),
    );
    assert_eq!(lens.fetch().unwrap(), vec![1, 2, 3]);

    let missing = File::open(dir.join("nope.txt"), |p| std::fs::read(p));
    let err = ctx
        .spawn(|b: Vec<u8>| b.len(), (missing,))
        .fetch()
        .unwrap_err();
    let text = common::chain(&err);
    assert!(
        text.contains("nope.txt") && text.contains("reading"),
        "{text}"
    );
    // The context keeps working.
    assert_eq!(
        ctx.spawn(|w: Vec<String>| w.len(), (words,))
            .fetch()
            .unwrap(),
        3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tofile_writes_a_result_that_later_tasks_read_back_and_never_writes_over_a_file() {
    let dir = common::scratch("files-test", "tofile");
    let ctx = ctx();
    let data = ctx.spawn(
        || (0..50_000).map(|i| (i as f64).sin()).collect::<Vec<f64>>(),
        (),
    );
    let file = ctx.tofile(&data, dir.join("sines.bin")).fetch().unwrap();
    assert_eq!(file.path(), dir.join("sines.bin"));
    let back = ctx.spawn(|v: Vec<f64>| v, (&file,)).fetch().unwrap();
    assert_eq!(back, data.fetch().unwrap());

    // An existing file is left alone and the task fails saying so.
    std::fs::write(dir.join("taken"), b"keep me").unwrap();
    let err = ctx.tofile(&data, dir.join("taken")).fetch().unwrap_err();
    assert!(
        common::chain(&err).contains("never written over"),
        "{}",
        common::chain(&err)
    );
    assert_eq!(std::fs::read(dir.join("taken")).unwrap(), b"keep me");

    // So is a link, dangling or not: nothing is written through it.
    #[cfg(unix)]
    {
        let target = dir.join("target");
        std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
        assert!(ctx.tofile(&data, dir.join("link")).fetch().is_err());
        assert!(!target.exists(), "written through a link");
    }

    // A writer and reader of one's own.
    let csv = ctx.tofile_with(
        &ctx.spawn(|| vec![(1u32, 2.5f32), (3, 4.5)], ()),
        dir.join("pairs.csv"),
        |v: &Vec<(u32, f32)>, w| {
            for (a, b) in v {
                writeln!(w, "{a},{b}")?;
            }
            Ok(())
        },
        |p| {
            std::fs::read_to_string(p)?
                .lines()
                .map(|l| {
                    let (a, b) = l.split_once(',').ok_or(std::io::ErrorKind::InvalidData)?;
                    Ok((a.parse().unwrap(), b.parse().unwrap()))
                })
                .collect()
        },
    );
    let csv = csv.fetch().unwrap();
    assert_eq!(
        std::fs::read_to_string(csv.path()).unwrap(),
        "1,2.5\n3,4.5\n"
    );
    assert_eq!(csv.read().unwrap(), vec![(1, 2.5), (3, 4.5)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Record {
    name: String,
    values: Vec<i32>,
}

#[test]
fn chunks_save_and_load_their_types_and_refuse_others() {
    let dir = common::scratch("files-test", "save");
    storage::register_serde::<Record>(|r| (r.name.len() + 4 * r.values.len()) as u64);
    let r = Record {
        name: "block".into(),
        values: vec![-1, 0, 7],
    };
    Chunk::new(r.clone()).save(dir.join("r.bin")).unwrap();
    assert_eq!(
        Chunk::<Record>::load(dir.join("r.bin"))
            .unwrap()
            .collect()
            .unwrap(),
        r
    );
    match Chunk::<Vec<u8>>::load(dir.join("r.bin")) {
        Err(StorageError::Type { found, .. }) => assert!(found.contains("Record"), "{found}"),
        other => panic!("{other:?}"),
    }
    // An array of numbers, raw, bit for bit.
    let a = ndarray::Array2::from_shape_fn((3, 5), |(i, j)| i as f32 - j as f32 / 3.0);
    Chunk::new(a.clone()).save(dir.join("a.bin")).unwrap();
    assert_eq!(
        Chunk::<ndarray::Array2<f32>>::load(dir.join("a.bin"))
            .unwrap()
            .collect()
            .unwrap(),
        a
    );
    // A type with no way to be written says how to give it one.
    struct Opaque;
    let e = Chunk::new(Opaque).save(dir.join("o.bin")).unwrap_err();
    assert!(e.to_string().contains("register"), "{e}");
    assert!(!dir.join("o.bin").exists());
    // A file that is not a saved value.
    std::fs::write(dir.join("junk"), b"hello").unwrap();
    assert!(matches!(
        Chunk::<Record>::load(dir.join("junk")),
        Err(StorageError::Format { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- checkpoints --------------------------------------------------------------------

const CHILD: &str = "DAGGER_CHECKPOINT_CHILD";
const PARTS: u64 = 8;

/// The program a child process runs: eight slow parts and their total, checkpointed in
/// `dir`; each part appends its index and the run's label to `dir/ran.log` when it runs.
fn checkpointed_program(dir: &Path, run: &str) -> u64 {
    let ctx = Context::builder().threads(1).gpus(false).build().unwrap();
    let parts: Vec<DTask<Vec<u64>>> = (0..PARTS)
        .map(|i| {
            let log = dir.join("ran.log");
            let run = run.to_owned();
            ctx.spawn_with(
                Options::new().name("part").checkpoint(dir),
                move || {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(&log)
                        .unwrap();
                    writeln!(f, "{run} {i}").unwrap();
                    std::thread::sleep(Duration::from_millis(60));
                    (0..1000).map(|k| k * (i + 1)).collect()
                },
                (),
            )
        })
        .collect();
    let total = ctx.spawn_with(
        Options::new().name("total").checkpoint(dir),
        |v: Vec<Vec<u64>>| v.iter().flatten().sum::<u64>(),
        (&parts,),
    );
    total.fetch().unwrap()
}

#[test]
fn checkpoint_child() {
    // Runs only as the child process of the test below.
    if let Ok(spec) = std::env::var(CHILD) {
        let (dir, run) = spec.split_once('|').unwrap();
        let total = checkpointed_program(Path::new(dir), run);
        println!("total {total}");
    }
}

fn ran(dir: &Path, run: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_to_string(dir.join("ran.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(run)?.trim().parse().ok())
        .collect();
    v.sort();
    v
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ckpt"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_checkpointed_program_resumes_with_only_the_work_that_was_left() {
    let dir = common::scratch("files-test", "ckpt");
    let child = |run: &str| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "checkpoint_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, format!("{}|{run}", dir.display()));
        c
    };
    // First run: killed once three parts are saved.
    let mut first = child("first")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoints(&dir).len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no checkpoints appeared"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let saved = checkpoints(&dir);
    assert!(!saved.contains(&"total.ckpt".to_string()), "{saved:?}");
    let saved_parts: Vec<u64> = (0..PARTS)
        .filter(|&i| {
            let name = if i == 0 {
                "part.ckpt".to_string()
            } else {
                format!("part.{i}.ckpt")
            };
            saved.contains(&name)
        })
        .collect();
    assert!(
        saved_parts.len() >= 3 && saved_parts.len() < PARTS as usize,
        "{saved:?}"
    );

    // Second run: only the parts without a checkpoint run, and the total is right.
    let out = common::within(120, "the resumed run", {
        let mut c = child("second");
        move || c.output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want: u64 = (0..PARTS)
        .map(|i| (0..1000u64).map(|k| k * (i + 1)).sum::<u64>())
        .sum();
    assert!(
        stdout.contains(&format!("total {want}")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = ran(&dir, "second");
    let missing: Vec<u64> = (0..PARTS).filter(|i| !saved_parts.contains(i)).collect();
    assert_eq!(
        second, missing,
        "the resumed run ran exactly the parts without a checkpoint"
    );

    // Third run: everything is restored, nothing runs.
    let out = common::within(120, "the restored run", {
        let mut c = child("third");
        move || c.output().unwrap()
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("total {want}")));
    assert!(ran(&dir, "third").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_of_a_type_that_cannot_be_saved_fails_the_task_saying_so() {
    let dir = common::scratch("files-test", "ckpt-type");
    let ctx = ctx();
    #[derive(Clone)]
    struct Opaque(#[allow(dead_code)] u8);
    let t = ctx.spawn_with(Options::new().name("o").checkpoint(&dir), || Opaque(1), ());
    let err = t.fetch().err().expect("an error");
    assert!(
        common::chain(&err).contains("register"),
        "{}",
        common::chain(&err)
    );
    let _ = Arc::new(());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chunk_opened_from_a_file_is_read_from_it_and_never_changes_it() {
    let dir = common::scratch("files-test", "open");
    let path = dir.join("ramp.bin");
    let ramp: Vec<f64> = (0..100_000).map(|i| i as f64 * 0.5).collect();
    Chunk::new(ramp.clone()).save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let ctx = Context::builder()
        .threads(2)
        .gpus(false)
        .memory_limit(1 << 20)
        .spill_dir(&dir)
        .build()
        .unwrap();
    let c = ctx.open_chunk::<Vec<f64>>(&path).unwrap();
    assert!(c.is_on_disk(), "nothing is read at the call");
    assert_eq!(ctx.memory_stats().reloads, 0);
    let sum =
        |c: &Chunk<Vec<f64>>| ctx.spawn(|v: Arc<Vec<f64>>| v.iter().sum::<f64>(), (c.shared(),));
    assert_eq!(sum(&c).fetch().unwrap(), ramp.iter().sum::<f64>());
    // Pushed out by other values, it is dropped from memory without being written...
    let others: Vec<_> = (0..3)
        .map(|i| ctx.to_chunk(vec![i as f64; 100_000]))
        .collect();
    let s = ctx.memory_stats();
    assert!(c.is_on_disk(), "{s:?}");
    assert!(s.clean_evictions >= 1, "{s:?}");
    // ...and read from its file again.
    assert_eq!(c.collect().unwrap(), ramp);
    assert!(matches!(
        ctx.open_chunk::<Vec<f32>>(&path),
        Err(StorageError::Type { .. })
    ));
    drop((c, others, ctx));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is never changed or removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
