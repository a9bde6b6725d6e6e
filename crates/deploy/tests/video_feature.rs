//! Videos and streams need FFmpeg's libraries at build time, so they are the cargo feature `video` (off by
//! default: the README's commands build with only a Rust toolchain and a C compiler). Without it this says
//! which tests were not built; `.ci/run` builds them (`--features video`).

#[cfg(not(feature = "video"))]
#[test]
fn video_tests_are_built_with_the_video_feature() {
    eprintln!(
        "not built: predict on videos and streams (tests/video_cli.rs); run them with `cargo test --release -p \
         deploy --features video` after `apt-get install libavformat-dev libavcodec-dev libswscale-dev \
         libclang-dev pkg-config`"
    );
}
