//! The `train` binary as a user runs it: a run killed with SIGKILL mid-epoch and one stopped with Ctrl-C both
//! continue with `train --resume RUN` and end with the weights of an uninterrupted run; Ctrl-C exits 130 and
//! prints the resume command; a folder that holds a run is not silently continued; `--hyp` keys are checked.

use model::weights::WeightsFile;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_train");

fn fixture_config() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
    )
    .into()
}

fn train_cmd(data: &Path, out: &Path, epochs: usize) -> Command {
    let mut c = Command::new(BIN);
    c.args(["--config", &fixture_config(), "--scale", "t", "--data"])
        .arg(data.join("data.yaml"))
        .args(["--epochs", &epochs.to_string()])
        .args(
            "--imgsz 64 --batch 4 --nbs 4 --workers 1 --close-mosaic 1 --device cpu --out"
                .split(' '),
        )
        .arg(out);
    c
}

fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .output()
        .expect("the train binary runs")
}

/// Waits until the run has completed `epochs` epochs (rows in results.csv) and a few batches of the next.
fn wait_for_epochs(child: &mut Child, dir: &Path, epochs: usize) {
    let t = Instant::now();
    loop {
        let rows = std::fs::read_to_string(dir.join("results.csv"))
            .map(|s| s.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if rows >= epochs {
            std::thread::sleep(Duration::from_millis(50));
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before epoch {epochs} completed");
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn max_rel_diff(a: &Path, b: &Path) -> f32 {
    let wa = WeightsFile::read(&a.to_string_lossy()).unwrap();
    let wb = WeightsFile::read(&b.to_string_lossy()).unwrap();
    assert_eq!(
        wa.tensors.keys().collect::<Vec<_>>(),
        wb.tensors.keys().collect::<Vec<_>>()
    );
    let mut worst = 0f32;
    for (k, ta) in &wa.tensors {
        for (x, y) in ta.data.iter().zip(&wb.tensors[k].data) {
            worst = worst.max((x - y).abs() / x.abs().max(1e-3));
        }
    }
    worst
}

#[test]
fn killed_or_interrupted_runs_resume_through_the_binary() {
    let root: PathBuf = std::env::temp_dir().join(format!("yolo-train-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    // 64 images of 64 px at batch 4: 16 batches per epoch, so a signal sent just after epoch 1 lands in epoch 2.
    data::synth::write_dataset(&data, 5, 64, 4, 64).unwrap();

    let full = root.join("full");
    let o = run(train_cmd(&data, &full, 3));
    assert!(o.status.success(), "{}", testkit::said(&o));
    let reference = full.join("weights/last.safetensors");

    // The same --out again: refused, the run left as it was.
    let o = run(train_cmd(&data, &full, 3));
    assert!(!o.status.success());
    assert!(
        testkit::said(&o).contains("already holds a run"),
        "{}",
        testkit::said(&o)
    );

    // SIGKILL in epoch 2, then --resume.
    let killed = root.join("killed");
    let mut child = train_cmd(&data, &killed, 3)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_epochs(&mut child, &killed, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let done = std::fs::read_to_string(killed.join("results.csv")).unwrap();
    assert!(done.lines().count() < 4, "killed before the end:\n{done}");
    let mut resume = Command::new(BIN);
    resume.args(["--device", "cpu", "--resume"]).arg(&killed);
    let o = run(resume);
    assert!(o.status.success(), "{}", testkit::said(&o));
    let rows = std::fs::read_to_string(killed.join("results.csv")).unwrap();
    assert_eq!(rows.lines().count(), 4, "header and every epoch:\n{rows}");
    let d = max_rel_diff(&reference, &killed.join("weights/last.safetensors"));
    eprintln!("killed + resumed vs uninterrupted: max relative difference {d:.2e}");
    assert!(d < 1e-4, "{d}");

    // Ctrl-C in epoch 2: exit 130 and the resume command, which then works.
    let stopped = root.join("stopped");
    let mut child = testkit::spawn(&mut train_cmd(&data, &stopped, 3));
    wait_for_epochs(&mut child, &stopped, 1);
    testkit::interrupt(&child);
    let o = child.wait_with_output().unwrap();
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(130), "{said}");
    assert!(!said.contains("final ("), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("continue with: train --resume"))
        .unwrap_or_else(|| panic!("no resume command in:\n{said}"));
    let dir = line
        .split("train --resume ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert_eq!(Path::new(dir), stopped);
    let mut resume = Command::new(BIN);
    resume.args(["--device", "cpu", "--resume", dir]);
    let o = run(resume);
    assert!(o.status.success(), "{}", testkit::said(&o));
    let d = max_rel_diff(&reference, &stopped.join("weights/last.safetensors"));
    eprintln!("Ctrl-C + resumed vs uninterrupted: max relative difference {d:.2e}");
    assert!(d < 1e-4, "{d}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn hyp_files_use_ultralytics_keys_and_reject_unknown_ones() {
    let root: PathBuf = std::env::temp_dir().join(format!("yolo-train-hyp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    data::synth::write_dataset(&data, 6, 4, 2, 64).unwrap();

    let bad = root.join("bad.yaml");
    std::fs::write(&bad, "lr0: 0.02\nmosaik: 0.5\n").unwrap();
    let mut c = train_cmd(&data, &root.join("bad-run"), 1);
    c.arg("--hyp").arg(&bad);
    let o = run(c);
    assert!(!o.status.success());
    assert!(
        testkit::said(&o).contains("bad.yaml: unknown key mosaik"),
        "{}",
        testkit::said(&o)
    );

    // Ultralytics' `scale` is the augmentation gain, and a run with it resumes (args round-trip).
    let good = root.join("good.yaml");
    std::fs::write(&good, "scale: 0.25\nmosaic: 0.0\n").unwrap();
    let out = root.join("good-run");
    let mut c = train_cmd(&data, &out, 1);
    c.arg("--hyp").arg(&good);
    let o = run(c);
    assert!(o.status.success(), "{}", testkit::said(&o));
    let args = std::fs::read_to_string(out.join("args.yaml")).unwrap();
    assert!(args.contains("\nscale: 0.25\n"), "{args}");
    assert!(args.contains("model_scale: t\n"), "{args}");
    let mut resume = Command::new(BIN);
    resume.args(["--device", "cpu", "--resume"]).arg(&out);
    let o = run(resume);
    assert!(o.status.success(), "{}", testkit::said(&o));
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn values_that_cannot_train_are_refused_before_anything_runs() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("yolo-train-values-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    data::synth::write_dataset(&data, 6, 4, 2, 64).unwrap();
    let cmd = |out: &Path| {
        let mut c = Command::new(BIN);
        c.args(["--config", &fixture_config(), "--scale", "t"])
            .args(["--device", "cpu", "--data"])
            .arg(data.join("data.yaml"))
            .arg("--out")
            .arg(out);
        c
    };
    // On the command line: clap refuses them (exit 2) naming the flag.
    for flag in [
        ["--batch", "0"],
        ["--imgsz", "0"],
        ["--imgsz", "100"],
        ["--epochs", "0"],
    ] {
        let out = root.join("cli-run");
        let mut c = cmd(&out);
        c.args(flag);
        let o = run(c);
        assert_eq!(o.status.code(), Some(2), "{flag:?}: {}", testkit::said(&o));
        assert!(
            testkit::said(&o).contains(&format!("invalid value '{}' for '{}", flag[1], flag[0])),
            "{flag:?}: {}",
            testkit::said(&o)
        );
        assert!(!out.exists(), "{flag:?}: nothing written");
    }
    // In a --hyp file: the same values are an error naming the key, before any epoch.
    for (hyp, key) in [
        ("batch: 0\n", "batch 0"),
        ("imgsz: 0\n", "imgsz 0"),
        ("lr0: -1\n", "lr0 -1"),
    ] {
        let f = root.join("hyp.yaml");
        std::fs::write(&f, hyp).unwrap();
        let out = root.join("hyp-run");
        let mut c = cmd(&out);
        c.arg("--hyp").arg(&f);
        let o = run(c);
        assert!(!o.status.success(), "{hyp}: {}", testkit::said(&o));
        assert!(
            testkit::said(&o).contains(key),
            "{hyp}: {}",
            testkit::said(&o)
        );
        assert!(!out.join("weights").exists(), "{hyp}: no training happened");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Ctrl-C while the labels are scanned (a large dataset): exit 130 at once with a message, nothing written.
#[cfg(unix)]
#[test]
fn ctrl_c_during_the_label_scan_stops_at_once() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("yolo-train-scan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    std::fs::create_dir_all(data.join("images/train")).unwrap();
    std::fs::create_dir_all(data.join("labels/train")).unwrap();
    // Big noisy JPEGs (tens of ms each to decode) make the scan take a minute.
    let mut img = image::RgbImage::new(2000, 2000);
    for (i, p) in img.pixels_mut().enumerate() {
        let v = (i as u32).wrapping_mul(2_654_435_761);
        p.0 = [v as u8, (v >> 8) as u8, (v >> 16) as u8];
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    let one = root.join("one.jpg");
    std::fs::write(&one, bytes.into_inner()).unwrap();
    // Links to one file: the scan decodes each, the disk holds one.
    for i in 0..1500 {
        std::os::unix::fs::symlink(&one, data.join(format!("images/train/{i:05}.jpg"))).unwrap();
        std::fs::write(
            data.join(format!("labels/train/{i:05}.txt")),
            "0 0.5 0.5 0.2 0.2\n",
        )
        .unwrap();
    }
    std::fs::write(
        data.join("data.yaml"),
        format!(
            "path: {}\ntrain: images/train\nval: images/train\nnames: [a]\n",
            data.display()
        ),
    )
    .unwrap();
    let out = root.join("run");
    let mut child = testkit::spawn(
        Command::new(BIN)
            .args([
                "--config",
                &fixture_config(),
                "--scale",
                "t",
                "--epochs",
                "1",
            ])
            .args(["--device", "cpu", "--data"])
            .arg(data.join("data.yaml"))
            .arg("--out")
            .arg(&out),
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "still scanning");
    let sent = std::time::Instant::now();
    testkit::interrupt(&child);
    let o = child.wait_with_output().unwrap();
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(130), "{said}");
    assert!(
        said.contains("interrupted (Ctrl-C) while reading the train labels"),
        "{said}"
    );
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "stopped at once"
    );
    assert!(
        !data.join("labels/train.yolo-burn.cache").exists(),
        "no half cache"
    );
    let files = std::fs::read_dir(out.join("weights")).map_or(0, |d| d.count());
    assert_eq!(files, 0, "no checkpoint");
    std::fs::remove_dir_all(&root).ok();
}

/// The checkpoint is one file: a resume needs only `last.state.safetensors` (trained weights, EMA,
/// optimizer, counters), so a kill between it and `last.safetensors` cannot mix epochs.
#[test]
fn resume_reads_everything_from_the_one_state_file() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("yolo-train-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    data::synth::write_dataset(&data, 6, 4, 2, 64).unwrap();
    let out = root.join("run");
    let mut child = train_cmd(&data, &out, 3)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_epochs(&mut child, &out, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let st =
        WeightsFile::read(&out.join("weights/last.state.safetensors").to_string_lossy()).unwrap();
    assert!(
        st.tensors.keys().any(|k| k.starts_with("ema.model.")),
        "EMA in the state file"
    );
    assert!(st.tensors.keys().any(|k| k.starts_with("opt.")));
    // last.safetensors half-written by a kill: the resume does not need it.
    std::fs::write(out.join("weights/last.safetensors"), b"half a file").unwrap();
    let mut c = Command::new(BIN);
    c.args(["--device", "cpu", "--epochs", "2", "--resume"])
        .arg(&out);
    let o = run(c);
    assert!(o.status.success(), "{}", testkit::said(&o));
    assert!(
        testkit::said(&o).contains("resuming"),
        "{}",
        testkit::said(&o)
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + 3 epochs: {csv}");
    let leftovers: Vec<_> = std::fs::read_dir(out.join("weights"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&root).ok();
}

/// Fine-tuning: `--weights` trained for 3 classes into a 4-class dataset transfers everything but the class
/// branch, with a line saying so; `--freeze 2` leaves layers 0 and 1 at the initial weights while the rest
/// trains (BatchNorm statistics still move, as in Ultralytics).
#[test]
fn weights_of_another_class_count_transfer_and_freeze_keeps_layers() {
    let root: PathBuf = std::env::temp_dir().join(format!("yolo-train-ft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    data::synth::write_dataset(&data, 8, 8, 2, 64).unwrap();
    let o = run(train_cmd(&data, &root.join("base"), 1));
    assert!(o.status.success(), "{}", testkit::said(&o));
    let base = root.join("base/weights/last.safetensors");

    let four = root.join("four");
    std::fs::create_dir_all(&four).unwrap();
    let yaml = std::fs::read_to_string(data.join("data.yaml")).unwrap();
    let yaml = yaml.replace(
        "train: images/train",
        &format!("path: {}\ntrain: images/train", data.display()),
    );
    std::fs::write(four.join("data.yaml"), format!("{yaml}  3: star\n")).unwrap();
    let mut c = train_cmd(&four, &root.join("ft"), 1);
    c.arg("--weights").arg(&base);
    let o = run(c);
    let s = testkit::said(&o);
    assert!(o.status.success(), "{s}");
    let line = s
        .lines()
        .find(|l| l.contains("transferred"))
        .unwrap_or_else(|| panic!("{s}"));
    let nums: Vec<usize> = line
        .split_once("transferred ")
        .unwrap()
        .1
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(2)
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(nums[0] < nums[1] && nums[0] + 10 > nums[1], "{line}");
    assert!(
        s.contains(".cv3.0.2.weight"),
        "the class branch is named: {s}"
    );

    let frozen = root.join("frozen");
    let mut c = train_cmd(&data, &frozen, 1);
    c.arg("--weights").arg(&base).args(["--freeze", "2"]);
    let o = run(c);
    assert!(o.status.success(), "{}", testkit::said(&o));
    assert!(
        testkit::said(&o).contains("freezing layers 0..1"),
        "{}",
        testkit::said(&o)
    );
    let a = WeightsFile::read(&base.to_string_lossy()).unwrap();
    let b = WeightsFile::read(&frozen.join("weights/last.safetensors").to_string_lossy()).unwrap();
    let diff = |prefix: &str| {
        a.tensors
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && !k.contains("running_"))
            .flat_map(|(k, t)| t.data.iter().zip(&b.tensors[k].data))
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    assert!(
        diff("model.0.") < 1e-6 && diff("model.1.") < 1e-6,
        "frozen layers moved"
    );
    assert!(diff("model.2.") > 1e-4, "layer 2 trains");

    let mut c = train_cmd(&data, &root.join("all"), 1);
    c.args(["--freeze", "99"]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(
        testkit::said(&o).contains("--freeze 99: the model has"),
        "{}",
        testkit::said(&o)
    );
    std::fs::remove_dir_all(&root).ok();
}

/// Two runs into one folder at once: the second is refused while the first holds it (its lock is the OS's,
/// released however the first ends), and nothing of the second is written there.
#[test]
fn a_folder_in_use_by_another_run_is_refused() {
    let tmp = std::env::temp_dir().join(format!("yolo-train-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    data::synth::write_dataset(&data, 6, 4, 2, 64).unwrap();
    let out = tmp.join("run");
    std::fs::create_dir_all(&out).unwrap();
    // Another process's run holds the folder (this test process takes the lock the trainer takes).
    let held = std::fs::File::create(out.join(".lock")).unwrap();
    held.lock().unwrap();
    let o = run(train_cmd(&data, &out, 1));
    let said = testkit::said(&o);
    assert!(
        !o.status.success() && said.contains("is in use by another training run"),
        "{said}"
    );
    assert!(!out.join("args.yaml").exists() && !out.join("results.csv").exists());
    // Released: the same folder trains.
    drop(held);
    let o = run(train_cmd(&data, &out, 1));
    assert!(o.status.success(), "{}", testkit::said(&o));
    assert!(out.join("weights/last.safetensors").exists());
    std::fs::remove_dir_all(&tmp).ok();
}
