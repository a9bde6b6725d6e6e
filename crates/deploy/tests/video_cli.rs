//! `deploy predict` on videos and streams, against what Ultralytics' predict wrote for the same clip
//! (`scripts/make_video_fixture.py`: a lossless 10-frame clip, the Ultralytics-trained weights of
//! fixtures/trained_mobileone, imgsz 192, conf 0.02, every frame and vid_stride 3).
#![cfg(feature = "video")]

use deploy::video::{Location, VideoReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-video-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs predict on `source` with the fixture's settings; returns stdout + stderr.
fn predict(source: &str, out: &Path, extra: &[&str]) -> String {
    let said = testkit::succeeds(
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg("predict")
            .arg("--weights")
            .arg(fixtures().join("trained_mobileone/weights.safetensors"))
            .args(["--source", source, "--imgsz", "192", "--conf", "0.02"])
            .args(["--save-txt", "--save-conf", "--device", "cpu", "--out"])
            .arg(out)
            .args(extra),
    );
    said
}

/// The label files under `got` are exactly those under `want` (names), with the same boxes.
fn assert_same_labels(got: &Path, want: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(got), names(want), "label files");
    for n in names(want) {
        let (g, w) = (
            testkit::label_rows(&got.join(&n)),
            testkit::label_rows(&want.join(&n)),
        );
        assert_eq!(g.len(), w.len(), "{n}");
        for (a, b) in g.iter().zip(&w) {
            assert_eq!(a[0], b[0], "{n}: class");
            for (x, y) in a[1..].iter().zip(&b[1..]) {
                assert!((x - y).abs() <= 2e-6, "{n}: {a:?} vs {b:?}");
            }
        }
    }
}

fn frames_of(p: &Path) -> (usize, (u32, u32), f64) {
    let mut r = VideoReader::open(&Location::File(p.to_path_buf()), 1).unwrap();
    let mut n = 0;
    let mut size = (0, 0);
    while let Some(f) = r.next_frame().unwrap() {
        n += 1;
        size = f.dimensions();
    }
    (n, size, r.fps())
}

#[test]
fn video_frames_and_labels_equal_ultralytics() {
    let clip = fixtures().join("video/clip.avi");
    let dir = temp("file");
    let said = predict(clip.to_str().unwrap(), &dir.join("all"), &[]);
    assert!(said.contains("10 frames of 1 video(s)"), "{said}");
    assert_same_labels(
        &dir.join("all/labels"),
        &fixtures().join("video/labels_stride1"),
    );
    // The annotated video: every frame, the source's size and rate, readable by a decoder.
    assert_eq!(frames_of(&dir.join("all/clip.avi")), (10, (192, 128), 10.0));

    // vid_stride 3 keeps frames 3, 6, 9 (the last of each group), numbered 1, 2, 3; the video plays at 10/3 fps.
    predict(
        clip.to_str().unwrap(),
        &dir.join("s3"),
        &["--vid-stride", "3", "--batch", "2"],
    );
    assert_same_labels(
        &dir.join("s3/labels"),
        &fixtures().join("video/labels_stride3"),
    );
    let (n, _, fps) = frames_of(&dir.join("s3/clip.avi"));
    assert_eq!(n, 3);
    assert!((fps - 10.0 / 3.0).abs() < 1e-3, "{fps}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_stream_url_is_read_as_it_arrives() {
    let clip = fixtures().join("video/clip.avi");
    let dir = temp("stream");
    let url = format!("file://{}", clip.canonicalize().unwrap().display());
    // With --stream-buffer no frame is dropped: the same labels as the file, named by the URL's stem.
    let said = predict(&url, &dir.join("buffered"), &["--stream-buffer"]);
    assert!(said.contains("10 frames of 1 video(s)"), "{said}");
    assert_same_labels(
        &dir.join("buffered/labels"),
        &fixtures().join("video/labels_stride1"),
    );
    // A stream is saved at 30 fps, as Ultralytics saves one.
    assert_eq!(
        frames_of(&dir.join("buffered/clip.avi")),
        (10, (192, 128), 30.0)
    );
    // Live (the default): frames that arrive while the model is busy may be dropped; the frames kept are
    // numbered in the order processed and the count adds up.
    let said = predict(&url, &dir.join("live"), &["--batch", "1"]);
    let kept: usize = said
        .split(" frames of 1 video(s)")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in:\n{said}"));
    let dropped: usize = said
        .split(" dropped to stay live")
        .next()
        .filter(|s| s.len() < said.len())
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(kept >= 1 && kept + dropped == 10, "{said}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_folder_of_images_and_videos_skips_a_broken_video() {
    let dir = temp("folder");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixtures().join("video/clip.avi"), src.join("clip.avi")).unwrap();
    std::fs::write(src.join("broken.mp4"), b"not a video at all").unwrap();
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([90, 140, 60]));
    img.save(src.join("still.png")).unwrap();
    let said = predict(src.to_str().unwrap(), &dir.join("out"), &[]);
    assert!(said.contains("broken.mp4: cannot open"), "{said}");
    assert!(
        said.contains("1 images (1 skipped), 10 frames of 1 video(s)"),
        "{said}"
    );
    assert!(dir.join("out/labels/still.txt").exists());
    assert!(dir.join("out/still.jpg").exists());
    assert!(dir.join("out/labels/clip_10.txt").exists());
    assert_eq!(frames_of(&dir.join("out/clip.avi")).0, 10);
    // No temp file of the video writer stays behind.
    let left: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An image named like one of a video's frames (`clip_1.png` next to `clip.avi`) keeps its outputs: the video's
/// frames take a longer name instead of overwriting the image's label file.
#[test]
fn an_image_named_like_a_frame_keeps_its_outputs() {
    let dir = temp("clash");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixtures().join("video/clip.avi"), src.join("clip.avi")).unwrap();
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([90, 140, 60]));
    img.save(src.join("clip_1.png")).unwrap();
    let said = predict(src.to_str().unwrap(), &dir.join("out"), &[]);
    assert!(
        said.contains("its frames are named clip_avi_<frame>"),
        "{said}"
    );
    assert!(
        dir.join("out/clip_1.jpg").exists(),
        "the image's own annotated copy"
    );
    assert!(dir.join("out/labels/clip_avi_10.txt").exists());
    assert!(!dir.join("out/labels/clip_10.txt").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// A longer video generated here from the val tiles (our MJPEG writer): predicting it with --vid-stride 4 gives,
/// frame for frame, what predicting the kept frames as images gives, and predictions.json names every frame.
#[test]
fn a_video_made_from_the_val_tiles_predicts_like_its_frames() {
    use deploy::video::VideoWriter;
    let dir = temp("long");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees/images/val");
    let mut tiles: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    let (n, w, h) = (240usize, 160u32, 128u32);
    let mut writer = VideoWriter::create(&dir.join("long.avi"), w, h, 25.0).unwrap();
    let mut scene = image::RgbImage::new(1, 1);
    for i in 0..n {
        if i % 20 == 0 {
            scene = image::open(&tiles[i / 20 % tiles.len()]).unwrap().to_rgb8();
        }
        let x = (i % 20) as u32 * 12;
        let frame = image::imageops::crop_imm(&scene, x, x / 2, w, h).to_image();
        writer.write(&frame).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), n);

    // The frames --vid-stride 4 keeps, as images named like the frames' outputs.
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    let mut r = VideoReader::open(&Location::File(dir.join("long.avi")), 4).unwrap();
    let mut k = 0;
    while let Some(f) = r.next_frame().unwrap() {
        k += 1;
        f.save(dir.join(format!("frames/long_{k}.png"))).unwrap();
    }
    assert_eq!(k, n / 4);

    let said = predict(
        dir.join("long.avi").to_str().unwrap(),
        &dir.join("video"),
        &["--vid-stride", "4", "--save-json", "--batch", "4"],
    );
    assert!(
        said.contains(&format!("{} frames of 1 video(s)", n / 4)),
        "{said}"
    );
    predict(
        dir.join("frames").to_str().unwrap(),
        &dir.join("images"),
        &["--save", "false"],
    );
    // Images get a label file even when empty; frames only with detections (as Ultralytics).
    let mut with_boxes = 0;
    for k in 1..=n / 4 {
        let name = format!("long_{k}.txt");
        let img = testkit::label_rows(&dir.join("images/labels").join(&name));
        let vid = dir.join("video/labels").join(&name);
        if img.is_empty() {
            assert!(!vid.exists(), "{name}: no boxes, no file");
            continue;
        }
        with_boxes += 1;
        assert_eq!(testkit::label_rows(&vid), img, "{name}");
    }
    assert!(with_boxes >= 10, "only {with_boxes} frames with boxes");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("video/predictions.json")).unwrap())
            .unwrap();
    let mut frames: Vec<u64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["file_name"], "long.avi");
            let f = d["frame"].as_u64().unwrap();
            assert_eq!(d["image_id"], format!("long_{f}"));
            f
        })
        .collect();
    frames.dedup();
    assert_eq!(frames.len(), with_boxes);
    let (kept, size, fps) = frames_of(&dir.join("video/long.avi"));
    assert_eq!((kept, size), (n / 4, (w, h)));
    assert!((fps - 25.0 / 4.0).abs() < 1e-3, "{fps}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A phone-style video (frames stored turned, a display matrix saying how to show them) is predicted upright,
/// as OpenCV (so Ultralytics) reads it: the same label files and boxes as the package's.
#[test]
fn a_rotated_video_is_predicted_upright() {
    let clip = fixtures().join("video/rotated.mp4");
    let r = VideoReader::open(&Location::File(clip.clone()), 1).unwrap();
    assert_eq!(r.quarter_turns(), 1);
    let dir = temp("rotated");
    predict(clip.to_str().unwrap(), &dir, &[]);
    assert_same_labels(
        &dir.join("labels"),
        &fixtures().join("video/labels_rotated"),
    );
    let (n, size, _) = frames_of(&dir.join("rotated.avi"));
    assert_eq!((n, size), (6, (192, 128)));
    std::fs::remove_dir_all(&dir).ok();
}

/// A server on a free local port that accepts connections and then either never answers (`garbage`
/// false) or answers an HTTP request with a video content type and endless random bytes.
fn hostile_server(garbage: bool) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            if !garbage {
                held.push(conn);
                continue;
            }
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut c = conn;
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n");
                let mut x = 0x9e37_79b9u32;
                loop {
                    let chunk: Vec<u8> = (0..65536)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            x as u8
                        })
                        .collect();
                    if c.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Streams that never deliver a frame end within the timeout, each as a skipped input with the reason
/// (every input failed: a non-zero exit); a waiting read stops at once on Ctrl-C.
#[test]
fn streams_that_stall_are_given_up_and_ctrl_c_stops_a_waiting_read() {
    let dir = temp("stall");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    drop(udp);
    let sources = [
        format!("rtsp://127.0.0.1:{}/live", hostile_server(false)),
        format!("http://127.0.0.1:{}/feed.ts", hostile_server(true)),
        format!("udp://127.0.0.1:{udp_port}"),
    ];
    for (i, src) in sources.iter().enumerate() {
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg("predict")
            .arg("--weights")
            .arg(fixtures().join("trained_mobileone/weights.safetensors"))
            .args([
                "--source",
                src,
                "--stream-timeout",
                "2",
                "--device",
                "cpu",
                "--out",
            ])
            .arg(dir.join(format!("out{i}")))
            .output()
            .unwrap();
        let said = testkit::said(&o);
        assert_eq!(o.status.code(), Some(1), "{src}:\n{said}");
        assert!(
            said.contains("nothing was predicted") && said.contains("skipped: "),
            "{src}:\n{said}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{src}: {:?}",
            t.elapsed()
        );
    }
    let child = testkit::spawn(
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg("predict")
            .arg("--weights")
            .arg(fixtures().join("trained_mobileone/weights.safetensors"))
            .args([
                "--source",
                &sources[0],
                "--stream-timeout",
                "600",
                "--device",
                "cpu",
                "--out",
            ])
            .arg(dir.join("waiting")),
    );
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    testkit::interrupt(&child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", testkit::said(&o));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    std::fs::remove_dir_all(&dir).ok();
}
