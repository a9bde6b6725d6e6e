//! Which maps are stored as u8. A map whose every reader is an INT8 convolution (dense or depthwise) with one
//! input quantization (or a max pool, upsample or copy into another such map) is written already quantized by
//! the operations that produce it: the convolution epilogues (INT8, depthwise, and a convolution kept in
//! float32, as the stem, with its direct kernel) requantize what they would have stored, and max pool, upsample and copy move bytes (quantization is monotone, so the max of the
//! quantized values is the quantized max). Its readers skip their quantize pass and every pass over the map
//! moves a quarter of the bytes; the values are exactly those of float maps quantized by their readers.

use super::op::Op;
use super::qconv::QuantIn;

/// Marks the u8 maps in `ops` (each operation's `out` / `src_u8` / `u8`) and returns each buffer's
/// quantization (`None`: float32). The input and the outputs stay float32.
pub(super) fn assign(
    ops: &mut [Op],
    buffers: usize,
    input: usize,
    outputs: &[usize],
) -> Vec<Option<QuantIn>> {
    let mut parent = linked(ops, buffers);
    let mut bad = vec![false; buffers];
    let mut quant: Vec<Option<QuantIn>> = vec![None; buffers];
    let mut mark = |parent: &mut Vec<usize>, b: usize| {
        let r = find(parent, b);
        bad[r] = true;
    };
    for &b in outputs.iter().chain([&input]) {
        mark(&mut parent, b);
    }
    for op in ops.iter() {
        match op {
            Op::QConv { pq, src, add, .. } => {
                let r = find(&mut parent, src.buf);
                match quant[r] {
                    Some(q) if q != pq.x => mark(&mut parent, r),
                    _ => quant[r] = Some(pq.x),
                }
                if let Some(a) = add {
                    mark(&mut parent, a.buf);
                }
            }
            // A float convolution writes a u8 map with its direct kernel (Winograd stores floats).
            Op::Conv {
                pc, src, add, dst, ..
            } => {
                for b in std::iter::once(src.buf).chain(add.map(|a| a.buf)) {
                    mark(&mut parent, b);
                }
                if !pc.writes_u8() {
                    mark(&mut parent, dst.buf);
                }
            }
            Op::Depthwise { pd, src, .. } => {
                let r = find(&mut parent, src.buf);
                match (&pd.int8, quant[r]) {
                    (None, _) => mark(&mut parent, r),
                    (Some(i), Some(q)) if q != i.x => mark(&mut parent, r),
                    (Some(i), _) => quant[r] = Some(i.x),
                }
            }
            _ if pass_through(op).is_some() => {}
            _ => {
                for b in op.reads() {
                    mark(&mut parent, b);
                }
                mark(&mut parent, op.writes());
            }
        }
    }
    let of: Vec<Option<QuantIn>> = (0..buffers)
        .map(|b| {
            let r = find(&mut parent, b);
            quant[r].filter(|_| !bad[r])
        })
        .collect();
    for op in ops.iter_mut() {
        match op {
            Op::QConv {
                src,
                dst,
                src_u8,
                out,
                ..
            } => {
                *src_u8 = of[src.buf].is_some();
                *out = of[dst.buf];
            }
            Op::Conv { dst, out, .. } => *out = of[dst.buf],
            Op::Depthwise {
                src,
                dst,
                src_u8,
                out,
                ..
            } => {
                *src_u8 = of[src.buf].is_some();
                *out = of[dst.buf];
            }
            Op::MaxPool { dst, u8, .. }
            | Op::Upsample { dst, u8, .. }
            | Op::Copy { dst, u8, .. } => *u8 = of[dst.buf].is_some(),
            _ => {}
        }
    }
    of
}

/// Each buffer's group: buffers joined by max pool, upsample and copy hold values of one quantization when
/// they are u8 maps. Calibration gives every convolution reading a group one input range ([`groups`]).
fn linked(ops: &[Op], buffers: usize) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..buffers).collect();
    for op in ops {
        if let Some((s, d)) = pass_through(op) {
            let (a, b) = (find(&mut parent, s), find(&mut parent, d));
            parent[a] = b;
        }
    }
    parent
}

/// The group of every buffer (see [`linked`]), as one representative buffer each.
pub(super) fn groups(ops: &[Op], buffers: usize) -> Vec<usize> {
    let mut parent = linked(ops, buffers);
    (0..buffers).map(|b| find(&mut parent, b)).collect()
}

/// The source and destination buffers of an operation that only moves or compares values.
fn pass_through(op: &Op) -> Option<(usize, usize)> {
    match op {
        Op::MaxPool { src, dst, .. }
        | Op::Upsample { src, dst, .. }
        | Op::Copy { src, dst, .. } => Some((src.buf, dst.buf)),
        _ => None,
    }
}

fn find(parent: &mut [usize], mut b: usize) -> usize {
    while parent[b] != b {
        parent[b] = parent[parent[b]];
        b = parent[b];
    }
    b
}
