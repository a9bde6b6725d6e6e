//! Video files, streams and cameras through FFmpeg's libraries (cargo feature `video`, on by default): frames
//! decoded to RGB in order, every `stride`-th one kept as Ultralytics' `vid_stride` keeps them (the last of each
//! group), and annotated frames written as MJPEG in AVI, what Ultralytics' predict writes on Linux.

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{self, Flags};
use ffmpeg_next as ffmpeg;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{name}: {what}")]
    Ffmpeg {
        name: String,
        what: &'static str,
        #[source]
        err: ffmpeg::Error,
    },
    #[error("{0}: FFmpeg takes UTF-8 names only")]
    NotUtf8(String),
    #[error("{0}: no video stream")]
    NoVideo(String),
    #[error("{0}: this FFmpeg has no {1}")]
    Missing(String, &'static str),
    #[error("{0}: {1}")]
    Msg(String, String),
}

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error here leaves FFmpeg's own lazy initialisation, which is enough for FFmpeg >= 4.
        let _ = ffmpeg::init();
        // Warnings such as "deprecated pixel format" are FFmpeg's business, not the user's.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
    });
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    File(PathBuf),
    /// `rtsp://`, `rtmp://`, `http(s)://`, `tcp://`, `udp://`, `file://`...: read as it arrives.
    Url(String),
    /// A camera by index, `/dev/videoN` through Video4Linux2.
    Camera(u32),
}

impl Location {
    pub fn display(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Url(u) => u.clone(),
            Location::Camera(i) => format!("camera {i} (/dev/video{i})"),
        }
    }
}

fn ff<'a>(name: &'a str, what: &'static str) -> impl FnOnce(ffmpeg::Error) -> VideoError + 'a {
    move |err| VideoError::Ffmpeg {
        name: name.to_string(),
        what,
        err,
    }
}

fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::util::error::EAGAIN)
}

/// Decodes one video stream, frame by frame.
pub struct VideoReader {
    name: String,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream: usize,
    scaler: Option<(scaling::Context, (Pixel, u32, u32))>,
    stride: usize,
    decoded: usize,
    eof_sent: bool,
    fps: f64,
    frames: Option<usize>,
    /// Clockwise quarter turns that display the frames upright (a phone video's display matrix).
    quarter_turns: u32,
    /// Packets the decoder refused (damaged data); decoding goes on after them.
    pub bad_packets: usize,
    /// A stream's: fed each decoded frame, it gives up a read that waits too long.
    watchdog: Option<Arc<Watchdog>>,
}

/// How long a stream may go without a decoded frame (opening included) before it is given up on.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Gives up a network read: when no frame came for `limit` (a server that accepts and never answers, a
/// silent `udp://` source, endless bytes that decode to nothing) or Ctrl-C was pressed. FFmpeg polls it from
/// inside every blocking network call, whatever the protocol.
struct Watchdog {
    start: Instant,
    /// Milliseconds after `start` of the last decoded frame (or the open).
    last: AtomicU64,
    limit: Duration,
}

impl Watchdog {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn stalled(&self) -> bool {
        // Saturating: a touch from another thread between the two reads must not wrap to "stalled".
        let since = (self.start.elapsed().as_millis() as u64)
            .saturating_sub(self.last.load(Ordering::Relaxed));
        since > self.limit.as_millis() as u64
    }

    fn give_up(&self) -> bool {
        data::interrupted() || self.stalled()
    }

    /// What an FFmpeg error on a watched stream means: the watchdog's timeout (`stalled` says so), Ctrl-C, or
    /// FFmpeg's own error while doing `what`.
    fn explain(
        &self,
        name: &str,
        stalled: String,
        e: ffmpeg::Error,
        what: &'static str,
    ) -> VideoError {
        if self.stalled() {
            VideoError::Msg(name.to_string(), stalled)
        } else if data::interrupted() {
            VideoError::Msg(name.to_string(), "stopped (Ctrl-C)".into())
        } else {
            ff(name, what)(e)
        }
    }
}

/// `avformat_open_input` + `avformat_find_stream_info` with options and an interrupt callback (ffmpeg-next
/// offers one or the other).
fn open_url(
    url: &str,
    opts: ffmpeg::Dictionary,
    watchdog: Arc<Watchdog>,
) -> Result<ffmpeg::format::context::Input, ffmpeg::Error> {
    use ffmpeg::ffi;
    let path = std::ffi::CString::new(url).map_err(|_| ffmpeg::Error::InvalidData)?;
    // SAFETY: the calls follow FFmpeg's documented ownership: a context allocated here is freed by
    // avformat_open_input on failure and by avformat_close_input after a failed probe; on success it is
    // wrapped (and later closed) by ffmpeg-next. The options dictionary is given to FFmpeg and taken back.
    // The callback's box is leaked on purpose: FFmpeg may call it until the context is closed.
    unsafe {
        let mut ps = ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err(ffmpeg::Error::Other {
                errno: ffmpeg::util::error::ENOMEM,
            });
        }
        let cb = move || watchdog.give_up();
        (*ps).interrupt_callback = ffmpeg::util::interrupt::new(Box::new(cb)).interrupt;
        let mut o = opts.disown();
        let res = ffi::avformat_open_input(&mut ps, path.as_ptr(), std::ptr::null_mut(), &mut o);
        ffmpeg::Dictionary::own(o);
        if res < 0 {
            return Err(ffmpeg::Error::from(res));
        }
        let r = ffi::avformat_find_stream_info(ps, std::ptr::null_mut());
        if r < 0 {
            ffi::avformat_close_input(&mut ps);
            return Err(ffmpeg::Error::from(r));
        }
        Ok(ffmpeg::format::context::Input::wrap(ps))
    }
}

impl VideoReader {
    pub fn open(location: &Location, stride: usize) -> Result<Self, VideoError> {
        Self::open_with_timeout(location, stride, STREAM_TIMEOUT)
    }

    /// As [`Self::open`]; a stream (URL) is given up after `timeout` without a frame.
    pub fn open_with_timeout(
        location: &Location,
        stride: usize,
        timeout: Duration,
    ) -> Result<Self, VideoError> {
        init();
        let name = location.display();
        let mut watchdog = None;
        let input = match location {
            Location::File(p) => {
                let s = p
                    .to_str()
                    .ok_or_else(|| VideoError::NotUtf8(name.clone()))?;
                ffmpeg::format::input(&s).map_err(ff(&name, "cannot open"))?
            }
            Location::Url(u) => {
                let wd = Arc::new(Watchdog {
                    start: Instant::now(),
                    last: AtomicU64::new(0),
                    limit: timeout,
                });
                watchdog = Some(wd.clone());
                let mut opts = ffmpeg::Dictionary::new();
                // The protocols' own socket timeouts too (microseconds), where FFmpeg honours them.
                let us = timeout.as_micros().to_string();
                opts.set("rw_timeout", &us);
                opts.set("timeout", &us);
                open_url(u, opts, wd.clone()).map_err(|e| {
                    let stalled =
                        format!("cannot open: nothing usable within {} s", timeout.as_secs());
                    wd.explain(&name, stalled, e, "cannot open")
                })?
            }
            #[cfg(not(feature = "camera"))]
            Location::Camera(_) => {
                return Err(VideoError::Msg(
                    name,
                    "cameras need deploy built with `--features camera` (FFmpeg's libavdevice)"
                        .into(),
                ))
            }
            #[cfg(feature = "camera")]
            Location::Camera(i) => {
                let v4l2 = ffmpeg::device::input::video()
                    .find(|f| f.name().split(',').any(|n| n == "v4l2"))
                    .ok_or_else(|| VideoError::Missing(name.clone(), "Video4Linux2 input"))?;
                let dev = format!("/dev/video{i}");
                match ffmpeg::format::open(&dev, &v4l2).map_err(ff(&name, "cannot open"))? {
                    ffmpeg::format::context::Context::Input(i) => i,
                    ffmpeg::format::context::Context::Output(_) => {
                        return Err(VideoError::NoVideo(name));
                    }
                }
            }
        };
        let st = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| VideoError::NoVideo(name.clone()))?;
        let stream = st.index();
        let rate = |r: ffmpeg::Rational| {
            (r.denominator() != 0)
                .then(|| f64::from(r))
                .filter(|f| *f > 0.0)
        };
        let fps = rate(st.avg_frame_rate())
            .or_else(|| rate(st.rate()))
            .unwrap_or(30.0);
        // OpenCV's CAP_PROP_FRAME_COUNT: the container's count, else duration x fps.
        let count = if st.frames() > 0 {
            Some(st.frames() as usize)
        } else if st.duration() > 0 {
            Some((st.duration() as f64 * f64::from(st.time_base()) * fps).round() as usize)
        } else {
            None
        };
        let stride = stride.max(1);
        let quarter_turns = st
            .side_data()
            .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
            .map_or(0, |sd| quarter_turns(sd.data()));
        let decoder = ffmpeg::codec::context::Context::from_parameters(st.parameters())
            .and_then(|c| c.decoder().video())
            .map_err(ff(&name, "no decoder for its video codec"))?;
        check_size(&name, decoder.width(), decoder.height())?;
        Ok(VideoReader {
            name,
            input,
            decoder,
            stream,
            scaler: None,
            stride,
            decoded: 0,
            eof_sent: false,
            fps,
            frames: count.map(|c| c / stride),
            quarter_turns,
            bad_packets: 0,
            watchdog,
        })
    }

    /// Restarts a stream's timeout: the caller was busy (a blocking send to a slow model), not the stream.
    pub fn progressed(&self) {
        if let Some(w) = &self.watchdog {
            w.touch();
        }
    }

    /// A read error, or what the watchdog made of it.
    fn read_error(&self, e: ffmpeg::Error, what: &'static str) -> VideoError {
        match &self.watchdog {
            Some(w) => {
                let stalled = format!("no frame for {} s: the stream stalled", w.limit.as_secs());
                w.explain(&self.name, stalled, e, what)
            }
            None => ff(&self.name, what)(e),
        }
    }

    /// Frames per second, as the container states it.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// How many frames `next_frame` will give, where the container says how many it holds.
    pub fn frames(&self) -> Option<usize> {
        self.frames
    }

    /// The next kept frame; `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>, VideoError> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => {
                    self.decoded += 1;
                    self.progressed();
                    if self.decoded.is_multiple_of(self.stride) {
                        return self.convert(&decoded).map(Some);
                    }
                    continue;
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(e) if is_again(&e) => {}
                Err(e) => return Err(ff(&self.name, "cannot decode")(e)),
            }
            if self.eof_sent {
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream => {
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        if !matches!(e, ffmpeg::Error::InvalidData) {
                            return Err(ff(&self.name, "cannot decode")(e));
                        }
                        self.bad_packets += 1;
                    }
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.decoder
                        .send_eof()
                        .map_err(ff(&self.name, "cannot decode"))?;
                    self.eof_sent = true;
                }
                Err(e) => return Err(self.read_error(e, "cannot read")),
            }
        }
    }

    fn convert(&mut self, frame: &ffmpeg::frame::Video) -> Result<RgbImage, VideoError> {
        let key = (frame.format(), frame.width(), frame.height());
        // A stream may change size mid-way; each size is checked before its frames are converted.
        check_size(&self.name, key.1, key.2)?;
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            // OpenCV's capture converts with bicubic filtering; for chroma-subsampled formats the filter
            // decides how chroma is upsampled, so the same one keeps our frames next to theirs.
            let ctx = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                key.1,
                key.2,
                Flags::BICUBIC,
            )
            .map_err(ff(&self.name, "cannot convert its pixel format"))?;
            self.scaler = Some((ctx, key));
        }
        let mut rgb = ffmpeg::frame::Video::empty();
        if let Some((ctx, _)) = &mut self.scaler {
            ctx.run(frame, &mut rgb)
                .map_err(ff(&self.name, "cannot convert its pixel format"))?;
        }
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let (stride, data) = (rgb.stride(0), rgb.data(0));
        let mut buf = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            buf.extend_from_slice(&data[y * stride..y * stride + w * 3]);
        }
        let img = RgbImage::from_raw(w as u32, h as u32, buf).ok_or_else(|| {
            VideoError::Msg(self.name.clone(), "frame buffer size mismatch".into())
        })?;
        Ok(match self.quarter_turns {
            1 => image::imageops::rotate90(&img),
            2 => image::imageops::rotate180(&img),
            3 => image::imageops::rotate270(&img),
            _ => img,
        })
    }

    /// Clockwise quarter turns applied to every frame (from the stream's display matrix), as OpenCV's
    /// capture and the ffmpeg command apply them.
    pub fn quarter_turns(&self) -> u32 {
        self.quarter_turns
    }
}

/// Frames larger than the image limit (PIL's decompression-bomb size, as for images) are refused before a
/// buffer is made for them: eight such frames queued would be gigabytes.
fn check_size(name: &str, w: u32, h: u32) -> Result<(), VideoError> {
    let max = data::image_ops::MAX_PIXELS;
    if u64::from(w) * u64::from(h) > max {
        return Err(VideoError::Msg(
            name.to_string(),
            format!("frames of {w}x{h} pixels, more than the {max} allowed for an image"),
        ));
    }
    Ok(())
}

/// Clockwise quarter turns (0-3) that show frames stored under a display matrix (nine native-endian int32:
/// 16.16 fixed point, 2.30 for the last column) upright: FFmpeg's `av_display_rotation_get` negated, rounded to
/// a multiple of 90 degrees, as the ffmpeg command's autorotate and OpenCV's `CAP_PROP_ORIENTATION_AUTO` do.
fn quarter_turns(matrix: &[u8]) -> u32 {
    if matrix.len() < 36 {
        return 0;
    }
    let m: Vec<f64> = matrix[..36]
        .chunks_exact(4)
        .map(|b| f64::from(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])) / 65536.0)
        .collect();
    let (s0, s1) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
    if s0 == 0.0 || s1 == 0.0 {
        return 0;
    }
    // av_display_rotation_get gives the counter-clockwise angle; displaying upright turns clockwise by it.
    let theta = (m[1] / s1).atan2(m[0] / s0).to_degrees();
    ((theta / 90.0).round() as i64).rem_euclid(4) as u32
}

/// Writes RGB frames as an MJPEG AVI. The file appears under its name only once finished (temp file +
/// rename), so an interrupted run never leaves a truncated video that looks complete.
pub struct VideoWriter {
    path: PathBuf,
    tmp: PathBuf,
    output: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    scaler: Option<(scaling::Context, (u32, u32))>,
    size: (u32, u32),
    stream: usize,
    time_base: ffmpeg::Rational,
    next_pts: i64,
    finished: bool,
}

impl VideoWriter {
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self, VideoError> {
        init();
        let name = path.display().to_string();
        let tmp = path.with_extension(format!("avi.tmp{}", std::process::id()));
        data::forced_exit::remove_on_exit(&tmp);
        let tmp_s = tmp
            .to_str()
            .ok_or_else(|| VideoError::NotUtf8(name.clone()))?;
        let mut output =
            ffmpeg::format::output_as(&tmp_s, "avi").map_err(ff(&name, "cannot create"))?;
        let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG)
            .ok_or_else(|| VideoError::Missing(name.clone(), "MJPEG encoder"))?;
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let rate = ffmpeg::Rational::new((fps.max(1.0) * 1000.0).round() as i32, 1000).reduce();
        let time_base = rate.invert();
        // 4:2:0 JPEG needs even sizes: a frame of odd size is scaled to the even size below it.
        let size = (width.max(2) & !1, height.max(2) & !1);
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff(&name, "cannot set up the MJPEG encoder"))?;
        enc.set_width(size.0);
        enc.set_height(size.1);
        enc.set_format(Pixel::YUVJ420P);
        enc.set_frame_rate(Some(rate));
        enc.set_time_base(time_base);
        // About 2 bits a pixel: JPEG quality in the 90s, near OpenCV's default of 95.
        enc.set_bit_rate((f64::from(size.0 * size.1) * fps.max(1.0) * 2.0) as usize);
        if global_header {
            enc.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc
            .open_as(codec)
            .map_err(ff(&name, "cannot open the MJPEG encoder"))?;
        let stream = {
            let mut ost = output
                .add_stream(codec)
                .map_err(ff(&name, "cannot add a stream"))?;
            ost.set_parameters(&encoder);
            ost.set_time_base(time_base);
            ost.index()
        };
        output
            .write_header()
            .map_err(ff(&name, "cannot write the header"))?;
        Ok(VideoWriter {
            path: path.to_path_buf(),
            tmp,
            output,
            encoder,
            scaler: None,
            size,
            stream,
            time_base,
            next_pts: 0,
            finished: false,
        })
    }

    pub fn write(&mut self, img: &RgbImage) -> Result<(), VideoError> {
        let name = self.path.display().to_string();
        let (w, h) = img.dimensions();
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != (w, h)) {
            let ctx = scaling::Context::get(
                Pixel::RGB24,
                w,
                h,
                Pixel::YUVJ420P,
                self.size.0,
                self.size.1,
                Flags::BILINEAR,
            )
            .map_err(ff(&name, "cannot convert frames"))?;
            self.scaler = Some((ctx, (w, h)));
        }
        let mut rgb = ffmpeg::frame::Video::new(Pixel::RGB24, w, h);
        let stride = rgb.stride(0);
        let row = w as usize * 3;
        let dst = rgb.data_mut(0);
        for (y, src) in img.as_raw().chunks_exact(row).enumerate() {
            dst[y * stride..y * stride + row].copy_from_slice(src);
        }
        let mut yuv = ffmpeg::frame::Video::empty();
        if let Some((ctx, _)) = &mut self.scaler {
            ctx.run(&rgb, &mut yuv)
                .map_err(ff(&name, "cannot convert frames"))?;
        }
        yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&yuv)
            .map_err(ff(&name, "cannot encode"))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<(), VideoError> {
        let name = self.path.display().to_string();
        let dst = self
            .output
            .stream(self.stream)
            .map(|s| s.time_base())
            .unwrap_or(self.time_base);
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.stream);
            packet.rescale_ts(self.time_base, dst);
            packet
                .write_interleaved(&mut self.output)
                .map_err(ff(&name, "cannot write"))?;
        }
        Ok(())
    }

    /// Flushes the encoder, writes the index and moves the file into place. Returns frames written.
    pub fn finish(mut self) -> Result<usize, VideoError> {
        let name = self.path.display().to_string();
        self.encoder
            .send_eof()
            .map_err(ff(&name, "cannot encode"))?;
        self.drain()?;
        self.output
            .write_trailer()
            .map_err(ff(&name, "cannot write the index"))?;
        let frames = self.next_pts as usize;
        let (tmp, path) = (self.tmp.clone(), self.path.clone());
        self.finished = true;
        // Closes the file before the rename.
        drop(self);
        std::fs::rename(&tmp, &path).map_err(|e| VideoError::Msg(name, e.to_string()))?;
        Ok(frames)
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        // A writer dropped unfinished (an error upstream) leaves no temp file behind.
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
        data::forced_exit::done(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::quarter_turns;

    fn matrix(m: [i32; 9]) -> Vec<u8> {
        m.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn display_matrices_give_quarter_turns() {
        const ONE: i32 = 65536;
        const W: i32 = 1 << 30;
        // What a phone writes for 90 (held upright), 180, 270 and 0 degrees of display rotation.
        assert_eq!(quarter_turns(&matrix([0, ONE, 0, -ONE, 0, 0, 0, 0, W])), 1);
        assert_eq!(quarter_turns(&matrix([-ONE, 0, 0, 0, -ONE, 0, 0, 0, W])), 2);
        assert_eq!(quarter_turns(&matrix([0, -ONE, 0, ONE, 0, 0, 0, 0, W])), 3);
        assert_eq!(quarter_turns(&matrix([ONE, 0, 0, 0, ONE, 0, 0, 0, W])), 0);
        // Degenerate or short side data is ignored.
        assert_eq!(quarter_turns(&matrix([0; 9])), 0);
        assert_eq!(quarter_turns(&[1, 2, 3]), 0);
    }
}
