//! The blocks a model YAML row can name, one file each, and the registry that maps a YAML module name to its
//! file.
//!
//! A block's file holds everything about it: its YAML arguments ([`BlockSpec::parse`], Ultralytics'
//! `parse_model` semantics), range checks, output shape and FLOPs, its burn module with Ultralytics'
//! initialisation, forward pass, deploy-time fusion and `state_dict` names ([`BlockModule`]). Adding a block
//! is one new file and one line in [`registry!`] below; the README walks through it. The graph's joins
//! (`Concat`), `nn.Upsample` and the heads (`Detect`, `Classify`) are structural and live in `spec`/`graph`.

pub mod bottleneck;
pub mod c2;
pub mod c2f;
pub mod c2psa;
pub mod c3;
pub mod c3ghost;
pub mod c3k2;
pub mod classify;
pub mod conv;
pub mod convtranspose;
pub mod detect;
pub mod dwconv;
pub mod ghost_bottleneck;
pub mod ghostconv;
pub mod maxpool;
pub mod mobileone;
pub mod spp;
pub mod sppf;
pub mod zeropad;

use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::Macs;
use crate::yaml_args::{Arg, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// How `parse_model` wires a row's channels into the constructor's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ultralytics' `base_modules`: `c1` (the input's channels) is prepended and the first YAML argument
    /// is `c2`, scaled by width and capped by max_channels.
    C2First,
    /// `repeat_modules` (C2f, C3, ...): as `C2First`, and the row's scaled repeat count is passed as the
    /// third argument `n` instead of stacking copies.
    C2FirstRepeat,
    /// Everything else: the arguments go to the constructor as written and the channels pass through.
    SameChannels,
}

/// A row as its block's parser sees it.
pub struct Row<'a> {
    /// The arguments as the row wrote them, after `c2` for [`Role::C2First`] blocks.
    pub args: &'a [Arg],
    /// Input channels.
    pub c1: usize,
    /// Output channels after scaling ([`Role::C2First`]), else `c1`.
    pub c2: usize,
    /// The row's scaled repeat count (a [`Role::C2FirstRepeat`] block's `n`).
    pub n: usize,
    /// The model's activation for `act=True` convs (`activation:` in the YAML, SiLU by default).
    pub act: Act,
    /// The scale letter (`n` ... `x`, or empty): some blocks change with it.
    pub scale: &'a str,
    pub ctx: &'a Ctx<'a>,
}

/// A block's resolved YAML arguments: everything known without tensors.
pub trait BlockSpec: Sized {
    type Module: BlockModule;
    const ROLE: Role;
    /// The class path Ultralytics prints in its model table.
    const TYPE_PATH: &'static str;
    /// A row of this block gives the model the 8.4 Detect head (parse_model's `legacy = False`).
    const MODERN_HEAD: bool = false;
    fn parse(row: &Row) -> Result<Self>;
    fn c_out(&self) -> usize;
    /// Output `(h, w)` for an input of `(h, w)`: strides come from here.
    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (h, w)
    }
    /// Multiply-accumulates (or, with `acc.weights`, weights) for an input of `c_in x h x w`.
    fn macs(&self, c_in: usize, h: usize, w: usize, acc: &mut Macs);
    /// Range checks past what `parse` checks, naming the row (values that would build a broken model).
    fn check(&self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }
    fn build(&self, device: &Device) -> Self::Module;
}

/// A block's burn module: forward pass, fusion and lowering (its tensors are named by its fields, see `nn::Named`).
pub trait BlockModule {
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
    /// The inference form (BatchNorm folded, branches reparameterized). Idempotent.
    fn fuse(self) -> Self;
    /// The fused block as primitive operations (ONNX export); an error for a block not fused.
    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V>;
}

/// The hidden width `int(c2 * e)`, at least one channel.
pub(crate) fn expand(c2: usize, e: f64, ctx: &Ctx) -> Result<usize> {
    let c = (c2 as f64 * e) as usize;
    if e.is_nan() || e <= 0.0 || c == 0 {
        return Err(ctx.err(format!(
            "e {e}: the hidden width int({c2} * e) must be at least 1 channel"
        )));
    }
    Ok(c)
}

pub(crate) const MAX_KERNEL: usize = 64;
pub(crate) const MAX_CHANNELS: usize = 16_384;

pub(crate) fn check_kernel(what: &str, k: usize, ctx: &Ctx) -> Result<()> {
    if k == 0 || k > MAX_KERNEL {
        return Err(ctx.err(format!("{what} {k}: must be between 1 and {MAX_KERNEL}")));
    }
    Ok(())
}

pub(crate) fn check_groups(g: usize, a: usize, b: usize, ctx: &Ctx) -> Result<()> {
    if g == 0 || !a.is_multiple_of(g) || !b.is_multiple_of(g) {
        return Err(ctx.err(format!("groups {g} must divide {a} and {b}")));
    }
    Ok(())
}

pub(crate) fn check_channels(what: &str, c: usize, ctx: &Ctx) -> Result<()> {
    if c == 0 || c > MAX_CHANNELS {
        return Err(ctx.err(format!(
            "{what} is {c} channels after scaling: must be between 1 and {MAX_CHANNELS}"
        )));
    }
    Ok(())
}

/// Generates, from one line per block, the enums that hold any block's spec ([`BlockKind`]) and module
/// ([`Block`]) and their dispatch.
macro_rules! registry {
    ($($name:literal => $variant:ident($spec:ty)),* $(,)?) => {
        /// The resolved arguments of any registered block.
        #[derive(Debug, Clone, PartialEq)]
        pub enum BlockKind {
            $($variant($spec),)*
        }

        /// Any registered block's burn module.
        // Built once per layer, so the size gap between variants costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum Block {
            $($variant(<$spec as BlockSpec>::Module),)*
        }

        /// The YAML names of the registered blocks.
        pub const NAMES: &[&str] = &[$($name),*];

        /// The role of a registered YAML module name, `None` for a name not registered.
        pub fn role(name: &str) -> Option<Role> {
            match name {
                $($name => Some(<$spec as BlockSpec>::ROLE),)*
                _ => None,
            }
        }

        /// Parses a row of a registered block (`None` for a name not registered).
        pub fn parse(name: &str, row: &Row) -> Option<Result<BlockKind>> {
            match name {
                $($name => Some(<$spec as BlockSpec>::parse(row).map(BlockKind::$variant)),)*
                _ => None,
            }
        }

        impl BlockKind {
            pub fn type_name(&self) -> &'static str {
                match self { $(BlockKind::$variant(_) => <$spec as BlockSpec>::TYPE_PATH,)* }
            }
            pub fn modern_head(&self) -> bool {
                match self { $(BlockKind::$variant(_) => <$spec as BlockSpec>::MODERN_HEAD,)* }
            }
            pub fn c_out(&self) -> usize {
                match self { $(BlockKind::$variant(s) => s.c_out(),)* }
            }
            pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
                match self { $(BlockKind::$variant(s) => s.out_hw(h, w),)* }
            }
            pub fn macs(&self, c_in: usize, h: usize, w: usize, acc: &mut Macs) {
                match self { $(BlockKind::$variant(s) => s.macs(c_in, h, w, acc),)* }
            }
            pub(crate) fn check(&self, ctx: &Ctx) -> Result<()> {
                match self { $(BlockKind::$variant(s) => s.check(ctx),)* }
            }
            pub fn build(&self, device: &Device) -> Block {
                match self { $(BlockKind::$variant(s) => Block::$variant(s.build(device)),)* }
            }
        }

        impl Block {
            /// The class path Ultralytics prints for this block.
            pub fn type_name(&self) -> &'static str {
                match self { $(Block::$variant(_) => <$spec as BlockSpec>::TYPE_PATH,)* }
            }
            pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
                match self { $(Block::$variant(m) => m.forward(x),)* }
            }
            pub fn fuse(self) -> Block {
                match self { $(Block::$variant(m) => Block::$variant(m.fuse()),)* }
            }
            pub fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
                match self { $(Block::$variant(m) => m.lower(l, x),)* }
            }
        }

    };
}

registry! {
    "Conv" => Conv(conv::ConvSpec),
    "Bottleneck" => Bottleneck(bottleneck::BottleneckSpec),
    "C2f" => C2f(c2f::C2fSpec),
    "C3" => C3(c3::C3Spec),
    "SPPF" => Sppf(sppf::SppfSpec),
    "SPP" => Spp(spp::SppSpec),
    "MobileOneBlock" => MobileOne(mobileone::MobileOneSpec),
    "C2" => C2(c2::C2Spec),
    "DWConv" => DwConv(dwconv::DwConvSpec),
    "GhostConv" => GhostConv(ghostconv::GhostConvSpec),
    "GhostBottleneck" => GhostBottleneck(ghost_bottleneck::GhostBottleneckSpec),
    "C3Ghost" => C3Ghost(c3ghost::C3GhostSpec),
    "nn.MaxPool2d" => MaxPool(maxpool::MaxPoolSpec),
    "nn.ZeroPad2d" => ZeroPad(zeropad::ZeroPadSpec),
    "nn.ConvTranspose2d" => ConvTranspose(convtranspose::ConvTransposeSpec),
    "C3k2" => C3k2(c3k2::C3k2Spec),
    "C2PSA" => C2Psa(c2psa::C2PsaSpec),
}

/// The arguments of the CSP blocks (C2, C2f, C3, C3Ghost): `(c1, c2, n=1, shortcut, g=1, e=0.5)`, and the
/// model's activation for their convs.
#[derive(Debug, Clone, PartialEq)]
pub struct CspArgs {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub shortcut: bool,
    pub g: usize,
    pub e: f64,
    pub act: Act,
}

impl CspArgs {
    /// `[c2, shortcut, g=1, e=0.5]` after `c2`; `shortcut` defaults differ per block.
    pub(crate) fn parse(row: &Row, default_shortcut: bool) -> Result<CspArgs> {
        use crate::yaml_args::{as_bool, as_f64, as_usize, check_arity, optional};
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 3, "[c2, shortcut, g=1, e=0.5]", ctx)?;
        Ok(CspArgs {
            c1: row.c1,
            c2: row.c2,
            n: row.n,
            shortcut: optional(r, 0, default_shortcut, |a| as_bool(a, "shortcut", ctx))?,
            g: optional(r, 1, 1, |a| as_usize(a, "g", ctx))?,
            e: optional(r, 2, 0.5, |a| as_f64(a, "e", ctx))?,
            act: row.act,
        })
    }

    /// The hidden width `int(c2 * e)`.
    pub fn hidden(&self) -> usize {
        (self.c2 as f64 * self.e) as usize
    }

    /// A hidden width of at least one channel that the groups divide.
    pub(crate) fn check(&self, ctx: &Ctx) -> Result<()> {
        let c = expand(self.c2, self.e, ctx)?;
        check_groups(self.g, c, c, ctx)
    }
}
