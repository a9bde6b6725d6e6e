//! Boxes drawn on images (augmentation dumps; predictions reuse the palette).

use crate::labels::Label;
use image::{Rgb, RgbImage};
use imageproc::drawing::{
    draw_filled_rect_mut, draw_hollow_rect_mut, draw_line_segment_mut, draw_text_mut, text_size,
};
use imageproc::rect::Rect;

/// Ultralytics' default palette, so our pictures colour classes like theirs.
pub const PALETTE: [[u8; 3]; 20] = [
    [0xFF, 0x38, 0x38],
    [0xFF, 0x9D, 0x97],
    [0xFF, 0x70, 0x1F],
    [0xFF, 0xB2, 0x1D],
    [0xCF, 0xD2, 0x31],
    [0x48, 0xF9, 0x0A],
    [0x92, 0xCC, 0x17],
    [0x3D, 0xDB, 0x86],
    [0x1A, 0x93, 0x34],
    [0x00, 0xD4, 0xBB],
    [0x2C, 0x99, 0xA8],
    [0x00, 0xC2, 0xFF],
    [0x34, 0x45, 0x93],
    [0x64, 0x73, 0xFF],
    [0x00, 0x18, 0xEC],
    [0x84, 0x38, 0xFF],
    [0x52, 0x00, 0x85],
    [0xCB, 0x38, 0xFF],
    [0xFF, 0x95, 0xC8],
    [0xFF, 0x37, 0xC7],
];

pub fn class_color(cls: usize) -> Rgb<u8> {
    Rgb(PALETTE[cls % PALETTE.len()])
}

/// Draws a pixel-space box `[x1, y1, x2, y2]` with a 2 px outline.
pub fn draw_box(img: &mut RgbImage, xyxy: [f32; 4], color: Rgb<u8>) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let x1 = xyxy[0].clamp(0.0, w - 1.0);
    let y1 = xyxy[1].clamp(0.0, h - 1.0);
    let x2 = xyxy[2].clamp(0.0, w - 1.0);
    let y2 = xyxy[3].clamp(0.0, h - 1.0);
    for t in 0..2 {
        let t = t as f32;
        let (bw, bh) = ((x2 - x1 - 2.0 * t).max(1.0), (y2 - y1 - 2.0 * t).max(1.0));
        draw_hollow_rect_mut(
            img,
            Rect::at((x1 + t) as i32, (y1 + t) as i32).of_size(bw as u32, bh as u32),
            color,
        );
    }
}

/// Draws an open polyline through pixel-space points, 2 px wide.
pub fn draw_polyline(img: &mut RgbImage, points: &[(f32, f32)], color: Rgb<u8>) {
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        for (dx, dy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)] {
            draw_line_segment_mut(img, (x0 + dx, y0 + dy), (x1 + dx, y1 + dy), color);
        }
    }
}

/// Draws normalized labels on an image.
pub fn draw_labels(img: &mut RgbImage, labels: &[Label]) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    for l in labels {
        let xyxy = [
            (l.cx - l.w / 2.0) * w,
            (l.cy - l.h / 2.0) * h,
            (l.cx + l.w / 2.0) * w,
            (l.cy + l.h / 2.0) * h,
        ];
        draw_box(img, xyxy, class_color(l.cls));
    }
}

/// DejaVu Sans (Bitstream Vera licence, `assets/LICENSE_DEJAVU`): labels and plots render the same everywhere,
/// with no system fonts needed.
pub const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Lines of text on a filled dark grey block with its top-left corner at `(x, y)`, white text, as Ultralytics'
/// classification annotation.
pub fn draw_text_block(img: &mut RgbImage, x: f32, y: f32, lines: &[String]) {
    let font = font();
    let scale = (img.width().max(img.height()) as f32 / 40.0).clamp(11.0, 28.0);
    let sizes: Vec<(u32, u32)> = lines.iter().map(|l| text_size(scale, font, l)).collect();
    let tw = sizes.iter().map(|s| s.0).max().unwrap_or(0) + 4;
    let line_h = sizes.iter().map(|s| s.1).max().unwrap_or(0) + 4;
    let th = line_h * lines.len() as u32;
    if tw == 4 || th == 0 {
        return;
    }
    let (x, y) = (x.max(0.0) as i32, y.max(0.0) as i32);
    draw_filled_rect_mut(img, Rect::at(x, y).of_size(tw, th), Rgb([64, 64, 64]));
    for (i, l) in lines.iter().enumerate() {
        draw_text_mut(
            img,
            Rgb([255, 255, 255]),
            x + 2,
            y + 1 + (i as u32 * line_h) as i32,
            scale,
            font,
            l,
        );
    }
}

fn font() -> &'static ab_glyph::FontRef<'static> {
    static FONT_REF: std::sync::OnceLock<ab_glyph::FontRef<'static>> = std::sync::OnceLock::new();
    FONT_REF
        .get_or_init(|| ab_glyph::FontRef::try_from_slice(FONT).expect("the bundled font parses"))
}

/// A box with its caption ("tree 0.87") on a filled strip in the class colour, white text, like Ultralytics'
/// annotator. The caption sits above the box, or inside it at the top edge of the image.
pub fn draw_labeled_box(img: &mut RgbImage, xyxy: [f32; 4], caption: &str, color: Rgb<u8>) {
    let font = font();
    draw_box(img, xyxy, color);
    let scale = (img.width().max(img.height()) as f32 / 40.0).clamp(11.0, 28.0);
    let (tw, th) = text_size(scale, font, caption);
    let (tw, th) = (tw + 4, th + 4);
    let x = (xyxy[0].max(0.0) as i32)
        .min(img.width() as i32 - tw as i32)
        .max(0);
    let y = if xyxy[1] as i32 >= th as i32 {
        xyxy[1] as i32 - th as i32
    } else {
        xyxy[1].max(0.0) as i32
    };
    draw_filled_rect_mut(img, Rect::at(x, y).of_size(tw, th), color);
    draw_text_mut(
        img,
        Rgb([255, 255, 255]),
        x + 2,
        y + 1,
        scale,
        font,
        caption,
    );
}
