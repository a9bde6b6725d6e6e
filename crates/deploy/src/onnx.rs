//! A standard ONNX graph (opset 17) of a fused model: input `images` (N, 3, H, W) with a dynamic batch,
//! output `output0` (N, 4 + nc, A) exactly as the eval output (xywh boxes in input pixels, sigmoid scores).
//!
//! Built node by node from the model's own structure with the `onnx-protobuf` messages; SiLU is written as
//! `x * Sigmoid(x)` and the DFL decode as Reshape/Softmax/Mul/ReduceSum, all plain ONNX ops.

use anyhow::{bail, Result};
use model::lowering::Lowering;
use model::modules::convtranspose::ConvTranspose;
use model::nn::{Bn, Conv2d};
use model::weights::host;
use model::YoloModel;
use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

pub const OPSET: i64 = 17;

enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Str(&'static str),
}

#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    n: usize,
    /// An INT8 model's quantized convolutions: written as QDQ (QuantizeLinear/DequantizeLinear on the input,
    /// DequantizeLinear of int8 weights per output channel), the graph ONNX Runtime and OpenVINO quantize.
    quant: crate::engine::QuantTable,
    /// The state_dict key of each quantized weight: its input's QuantizeLinear output is named
    /// `<key>.input_q`, so a reference can read each layer's quantized input.
    keys: std::collections::HashMap<model::burn::module::ParamId, String>,
}

impl Builder {
    fn fresh(&mut self, hint: &str) -> String {
        self.n += 1;
        format!("{hint}_{}", self.n)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, &out, attrs);
        out
    }

    fn node_to(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<(&str, Attr)>) {
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        n.name = format!("{op}_{}", self.nodes.len());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.to_string()];
        for (name, a) in attrs {
            let mut p = AttributeProto::new();
            p.name = name.to_string();
            match a {
                Attr::Int(i) => {
                    p.type_ = AttributeType::INT.into();
                    p.i = i;
                }
                Attr::Ints(v) => {
                    p.type_ = AttributeType::INTS.into();
                    p.ints = v;
                }
                Attr::Str(s) => {
                    p.type_ = AttributeType::STRING.into();
                    p.s = s.as_bytes().to_vec();
                }
            }
            n.attribute.push(p);
        }
        self.nodes.push(n);
    }

    fn outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> Vec<String> {
        let first = self.node(op, inputs, attrs);
        let outs: Vec<String> = (0..n_out).map(|i| format!("{first}_{i}")).collect();
        self.nodes.last_mut().expect("just pushed").output = outs.clone();
        outs
    }

    fn init_f32(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(hint);
        let mut t = TensorProto::new();
        t.name = name.clone();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = DataType::FLOAT as i32;
        t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(t);
        name
    }

    fn init_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        let mut t = TensorProto::new();
        t.name = name.clone();
        t.dims = vec![data.len() as i64];
        t.data_type = DataType::INT64 as i32;
        t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits.push(t);
        name
    }

    fn init_typed(&mut self, hint: &str, dims: &[usize], ty: DataType, raw: Vec<u8>) -> String {
        let name = self.fresh(hint);
        let mut t = TensorProto::new();
        t.name = name.clone();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = ty as i32;
        t.raw_data = raw;
        self.inits.push(t);
        name
    }

    /// `x` quantized and dequantized with `q`, and the weights as int8 dequantized per output channel.
    fn qdq(
        &mut self,
        x: &str,
        q: crate::engine::QuantIn,
        w: &model::weights::HostTensor,
        key: Option<String>,
    ) -> (String, String) {
        let s = self.init_f32("x_scale", &[], &[q.scale]);
        let z = self.init_typed("x_zero", &[], DataType::UINT8, vec![q.zero]);
        let xq = match key {
            Some(k) => {
                let out = format!("{k}.input_q");
                self.node_to("QuantizeLinear", &[x, &s, &z], &out, vec![]);
                out
            }
            None => self.node("QuantizeLinear", &[x, &s, &z], vec![]),
        };
        let xd = self.node("DequantizeLinear", &[&xq, &s, &z], vec![]);
        let cout = w.shape[0];
        let (wq, ws) = crate::engine::qconv::quantize_weights(&w.data, cout);
        let wq = self.init_typed(
            "w_int8",
            &w.shape,
            DataType::INT8,
            wq.iter().map(|&v| v as u8).collect(),
        );
        let wsn = self.init_f32("w_scale", &[cout], &ws);
        let wz = self.init_typed("w_zero", &[cout], DataType::INT8, vec![0; cout]);
        let wd = self.node(
            "DequantizeLinear",
            &[&wq, &wsn, &wz],
            vec![("axis", Attr::Int(0))],
        );
        (xd, wd)
    }

    fn conv2d(&mut self, x: &str, c: &Conv2d) -> String {
        let w = host(c.weight.val());
        let k = w.shape[2] as i64;
        let (xin, wn) = match self.quant.get(&c.weight.id).copied() {
            Some(q) => {
                let key = self.keys.get(&c.weight.id).cloned();
                self.qdq(x, q, &w, key)
            }
            None => (x.to_string(), self.init_f32("w", &w.shape, &w.data)),
        };
        let mut inputs = vec![xin, wn];
        if let Some(b) = &c.bias {
            let b = host(b.val());
            inputs.push(self.init_f32("b", &b.shape, &b.data));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let p = c.padding as i64;
        self.node(
            "Conv",
            &refs,
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![c.stride as i64; 2])),
                ("pads", Attr::Ints(vec![p; 4])),
                ("dilations", Attr::Ints(vec![c.dilation as i64; 2])),
                ("group", Attr::Int(c.groups as i64)),
            ],
        )
    }

    fn silu(&mut self, x: &str) -> String {
        let s = self.node("Sigmoid", &[x], vec![]);
        self.node("Mul", &[x, &s], vec![])
    }

    fn concat(&mut self, xs: &[String], axis: i64) -> String {
        let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
        self.node("Concat", &refs, vec![("axis", Attr::Int(axis))])
    }

    fn split(&mut self, x: &str, sizes: &[i64], axis: i64) -> Vec<String> {
        let s = self.init_i64("split", sizes);
        self.outputs(
            "Split",
            &[x, &s],
            sizes.len(),
            vec![("axis", Attr::Int(axis))],
        )
    }
}

/// Every block's own lowering ([`model::modules::BlockModule::lower`]) writes ONNX nodes through this.
impl Lowering for Builder {
    type V = String;

    fn conv2d(&mut self, x: &String, c: &Conv2d) -> String {
        Builder::conv2d(self, x, c)
    }

    fn conv_transpose2d(&mut self, x: &String, c: &ConvTranspose) -> String {
        let w = host(c.weight.val());
        let k = w.shape[2] as i64;
        let wn = self.init_f32("w", &w.shape, &w.data);
        let b = host(c.bias.val());
        let bn = self.init_f32("b", &b.shape, &b.data);
        let (s, p) = (c.stride as i64, c.padding as i64);
        self.node(
            "ConvTranspose",
            &[x.as_str(), &wn, &bn],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p; 4])),
            ],
        )
    }

    fn batch_norm(&mut self, x: &String, bn: &Bn) -> String {
        let p = |t: model::burn::tensor::Tensor<1>| host(t).data;
        let c = bn.weight.dims()[0];
        let scale = self.init_f32("bn_scale", &[c], &p(bn.weight.val()));
        let bias = self.init_f32("bn_bias", &[c], &p(bn.bias.val()));
        let mean = self.init_f32("bn_mean", &[c], &p(bn.running_mean.value()));
        let var = self.init_f32("bn_var", &[c], &p(bn.running_var.value()));
        let mut n = NodeProto::new();
        n.op_type = "BatchNormalization".into();
        n.name = format!("BatchNormalization_{}", self.nodes.len());
        n.input = vec![x.clone(), scale, bias, mean, var];
        let out = self.fresh("batchnormalization");
        n.output = vec![out.clone()];
        let mut eps = AttributeProto::new();
        eps.name = "epsilon".into();
        eps.type_ = AttributeType::FLOAT.into();
        eps.f = bn.eps as f32;
        n.attribute.push(eps);
        self.nodes.push(n);
        out
    }

    fn silu(&mut self, x: &String) -> String {
        Builder::silu(self, x)
    }

    fn relu(&mut self, x: &String) -> String {
        self.node("Relu", &[x.as_str()], vec![])
    }

    fn sigmoid(&mut self, x: &String) -> String {
        self.node("Sigmoid", &[x.as_str()], vec![])
    }

    fn add(&mut self, a: &String, b: &String) -> String {
        self.node("Add", &[a.as_str(), b.as_str()], vec![])
    }

    fn mul(&mut self, a: &String, b: &String) -> String {
        self.node("Mul", &[a.as_str(), b.as_str()], vec![])
    }

    fn concat(&mut self, xs: &[String]) -> String {
        Builder::concat(self, xs, 1)
    }

    fn split(&mut self, x: &String, sizes: &[usize]) -> Vec<String> {
        let sizes: Vec<i64> = sizes.iter().map(|&s| s as i64).collect();
        Builder::split(self, x, &sizes, 1)
    }

    fn max_pool(&mut self, x: &String, k: usize, s: usize, p: usize) -> String {
        let (k, s, p) = (k as i64, s as i64, p as i64);
        self.node(
            "MaxPool",
            &[x.as_str()],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p; 4])),
            ],
        )
    }

    fn upsample(&mut self, x: &String, scale: usize) -> String {
        let roi = self.init_f32("roi", &[0], &[]);
        let sc = scale as f32;
        let scales = self.init_f32("scales", &[4], &[1.0, 1.0, sc, sc]);
        self.node(
            "Resize",
            &[x.as_str(), &roi, &scales],
            vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ],
        )
    }

    fn zero_pad(&mut self, x: &String, pad: (usize, usize, usize, usize)) -> String {
        let (l, r, t, b) = pad;
        // ONNX pads: all begins (N, C, H, W), then all ends.
        let pads = self.init_i64(
            "pads",
            &[0, 0, t as i64, l as i64, 0, 0, b as i64, r as i64],
        );
        self.node(
            "Pad",
            &[x.as_str(), pads.as_str()],
            vec![("mode", Attr::Str("constant"))],
        )
    }

    fn global_avg_pool(&mut self, x: &String) -> String {
        self.node("GlobalAveragePool", &[x.as_str()], vec![])
    }

    fn attention(
        &mut self,
        qkv: &String,
        like: &String,
        heads: usize,
        key_dim: usize,
        head_dim: usize,
    ) -> (String, String) {
        let (h, kd, hd) = (heads as i64, key_dim as i64, head_dim as i64);
        let shape = self.init_i64("qkv_shape", &[0, h, 2 * kd + hd, -1]);
        let t = self.node("Reshape", &[qkv.as_str(), &shape], vec![]);
        let parts = Builder::split(self, &t, &[kd, kd, hd], 2);
        let scale = self.init_f32("scale", &[], &[(key_dim as f32).powf(-0.5)]);
        let q = self.node("Mul", &[&parts[0], &scale], vec![]);
        let perm = || ("perm", Attr::Ints(vec![0, 1, 3, 2]));
        let qt = self.node("Transpose", &[&q], vec![perm()]);
        let logits = self.node("MatMul", &[&qt, &parts[1]], vec![]);
        let attn = self.node("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
        let attn_t = self.node("Transpose", &[&attn], vec![perm()]);
        let y = self.node("MatMul", &[&parts[2], &attn_t], vec![]);
        let like_shape = self.node("Shape", &[like.as_str()], vec![]);
        let y = self.node("Reshape", &[&y, &like_shape], vec![]);
        let v = self.node("Reshape", &[&parts[2], &like_shape], vec![]);
        (y, v)
    }
}

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(match d {
            Ok(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
            Err(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
        });
        shape.dim.push(dim);
    }
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = DataType::FLOAT as i32;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_string();
    vi.type_ = Some(tp).into();
    vi
}

/// The ONNX model bytes for a fused model at input size `h x w` (batch dynamic).
pub fn export_onnx(model: &YoloModel, h: usize, w: usize) -> Result<Vec<u8>> {
    if let Err(e) = model::shapes::check_input_size(&model.spec, h, w) {
        bail!("{e}");
    }
    let mut b = Builder::default();
    if let Some(info) = &model.int8 {
        b.quant = crate::engine::int8_table(model, info)?;
        b.keys = crate::engine::conv_weight_keys(model);
    }
    if model.task() == model::Task::Classify {
        // Ultralytics' classifier export: the softmax of the logits, `(batch, nc)`.
        let logits = model.lower(&mut b, &"images".to_string())?;
        let flat = b.node("Flatten", &[&logits[0]], vec![("axis", Attr::Int(1))]);
        b.node_to("Softmax", &[&flat], "output0", vec![("axis", Attr::Int(1))]);
        return finish(b, h, w, &[Err("batch"), Ok(model.nc() as i64)]);
    }
    let d = model.detect();
    let maps = model.lower(&mut b, &"images".to_string())?;
    let no = (d.nc + 4 * d.reg_max) as i64;
    let shape = b.init_i64("shape", &[0, no, -1]);
    let flat: Vec<String> = maps
        .iter()
        .map(|m| b.node("Reshape", &[m, &shape], vec![]))
        .collect();
    let level_hw = model.head_sizes(h, w)?;
    let all = b.concat(&flat, 2);
    let parts = b.split(&all, &[4 * d.reg_max as i64, d.nc as i64], 1);
    // DFL: softmax over the bins of each side, expectation with the stored projection.
    let a: usize = level_hw.iter().map(|(h, w)| h * w).sum();
    let dfl_shape = b.init_i64("dfl_shape", &[0, 4, d.reg_max as i64, -1]);
    let bins = b.node("Reshape", &[&parts[0], &dfl_shape], vec![]);
    let sm = b.node("Softmax", &[&bins], vec![("axis", Attr::Int(2))]);
    let proj = host(d.dfl.conv.weight.val());
    let proj = b.init_f32("dfl_proj", &[1, 1, d.reg_max, 1], &proj.data);
    let wsum = b.node("Mul", &[&sm, &proj], vec![]);
    let axes = b.init_i64("axes", &[2]);
    let dist = b.node(
        "ReduceSum",
        &[&wsum, &axes],
        vec![("keepdims", Attr::Int(0))],
    );
    let lr = b.split(&dist, &[2, 2], 1);
    let (pts, st) = model::nn::anchor_grid(&level_hw, &d.strides);
    let ax: Vec<f32> = pts
        .iter()
        .map(|p| p[0])
        .chain(pts.iter().map(|p| p[1]))
        .collect();
    let anchors = b.init_f32("anchors", &[1, 2, a], &ax);
    let strides = b.init_f32("strides", &[1, 1, a], &st);
    let x1y1 = b.node("Sub", &[&anchors, &lr[0]], vec![]);
    let x2y2 = b.node("Add", &[&anchors, &lr[1]], vec![]);
    let sum = b.node("Add", &[&x1y1, &x2y2], vec![]);
    let half = b.init_f32("half", &[1], &[0.5]);
    let c = b.node("Mul", &[&sum, &half], vec![]);
    let wh = b.node("Sub", &[&x2y2, &x1y1], vec![]);
    let xywh = b.concat(&[c, wh], 1);
    let boxes = b.node("Mul", &[&xywh, &strides], vec![]);
    let scores = b.node("Sigmoid", &[&parts[1]], vec![]);
    b.node_to(
        "Concat",
        &[&boxes, &scores],
        "output0",
        vec![("axis", Attr::Int(1))],
    );
    let (rows, a) = (4 + d.nc as i64, a as i64);
    finish(b, h, w, &[Err("batch"), Ok(rows), Ok(a)])
}

/// The model around the built nodes: input `images` (`batch x 3 x h x w`), output `output0` of `out` dims.
fn finish(b: Builder, h: usize, w: usize, out: &[Result<i64, &str>]) -> Result<Vec<u8>> {
    let mut g = GraphProto::new();
    g.name = "yolo".into();
    g.node = b.nodes;
    g.initializer = b.inits;
    g.input = vec![value_info(
        "images",
        &[Err("batch"), Ok(3), Ok(h as i64), Ok(w as i64)],
    )];
    g.output = vec![value_info("output0", out)];
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.producer_name = "yolo-burn".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut op = OperatorSetIdProto::new();
    op.domain = String::new();
    op.version = OPSET;
    m.opset_import = vec![op];
    m.graph = Some(g).into();
    Ok(m.write_to_bytes()?)
}
