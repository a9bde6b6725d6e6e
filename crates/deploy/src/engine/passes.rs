//! Rewrites of the recorded dataflow that save passes over memory, none of which knows a block:
//! - an activation read only by its producer's consumers runs in that conv's (BatchNorm's, add's,
//!   product's) epilogue;
//! - dense convolutions of one input with the same geometry become one convolution whose output channels
//!   are stacked (the Detect head's first box and class convs), each original a channel slice of it;
//! - a residual add runs in the epilogue of the conv (or BatchNorm) that produces one of its terms, when
//!   nothing else reads that conv's output and the other term is ready before it;
//! - what nothing reads is dropped.
//!
//! Concat inputs written in place and buffer reuse are decided when the graph is planned ([`super::plan`]).

use super::graph::{ConvWeights, Graph, Id, NodeOp};
use super::Act;

pub fn optimize(g: &mut Graph) {
    fuse_activations(g);
    stack_convs(g);
    fuse_adds(g);
    prune(g);
}

/// Whether a conv can add a residual in its epilogue: the direct, Winograd and grouped kernels can; the
/// depthwise kernel and the burn fallback for dilation apply only an activation (every conv takes that).
fn takes_add(w: &ConvWeights) -> bool {
    w.dilated.is_none() && !w.depthwise()
}

fn fuse_activations(g: &mut Graph) {
    let mut uses = g.uses();
    for i in 0..g.order.len() {
        let id = g.order[i];
        let NodeOp::Act { x, f } = g.nodes[id].op else {
            continue;
        };
        let Some(act) = f.epilogue() else {
            continue;
        };
        let p = g.resolve(x);
        if uses[p] != 1 {
            continue;
        }
        let slot = match &mut g.nodes[p].op {
            NodeOp::Conv { act, add: None, .. } => act,
            NodeOp::Affine { act, add: None, .. }
            | NodeOp::Add { act, .. }
            | NodeOp::Mul { act, .. } => act,
            _ => continue,
        };
        if *slot != Act::None {
            continue;
        }
        *slot = act;
        g.nodes[id].op = NodeOp::Alias(p);
        uses[p] = uses[id];
    }
}

/// Which nodes read each node (after aliases), and whether a Concat or the output list does.
fn readers(g: &Graph) -> (Vec<Vec<Id>>, Vec<bool>) {
    let mut by = vec![Vec::new(); g.nodes.len()];
    let mut joined = vec![false; g.nodes.len()];
    for &id in &g.order {
        let op = &g.nodes[id].op;
        if matches!(op, NodeOp::Alias(_)) {
            continue;
        }
        for x in op.inputs() {
            let x = g.resolve(x);
            by[x].push(id);
            joined[x] |= matches!(op, NodeOp::Concat(_));
        }
    }
    for &o in &g.outputs {
        joined[g.resolve(o)] = true;
    }
    (by, joined)
}

fn stack_convs(g: &mut Graph) {
    let (by, joined) = readers(g);
    for (x, readers) in by.iter().enumerate() {
        // Dense, no add yet, and not about to be written in place into a Concat (a slice of a stacked
        // output could not be).
        let mut groups: Vec<Vec<Id>> = Vec::new();
        for &r in readers {
            let NodeOp::Conv {
                x: src,
                w,
                act,
                add: None,
            } = &g.nodes[r].op
            else {
                continue;
            };
            if g.resolve(*src) != x || w.groups != 1 || w.dilated.is_some() || joined[r] {
                continue;
            }
            let key = (w.k, w.s, w.p, *act);
            match groups.iter_mut().find(|grp| {
                let NodeOp::Conv { w, act, .. } = &g.nodes[grp[0]].op else {
                    unreachable!("groups hold convs")
                };
                (w.k, w.s, w.p, *act) == key
            }) {
                Some(grp) => {
                    if !grp.contains(&r) {
                        grp.push(r)
                    }
                }
                None => groups.push(vec![r]),
            }
        }
        for grp in groups.into_iter().filter(|grp| grp.len() > 1) {
            stack(g, x, &grp);
        }
    }
}

/// One conv computing every conv of `grp` (all read `x`), each original becoming its slice.
fn stack(g: &mut Graph, x: Id, grp: &[Id]) {
    // The originals' weights are moved into the merged conv: the originals become slices of it below.
    let convs: Vec<(ConvWeights, Act)> = grp
        .iter()
        .map(
            |&r| match std::mem::replace(&mut g.nodes[r].op, NodeOp::Input) {
                NodeOp::Conv { w, act, .. } => (*w, act),
                _ => unreachable!("stacked nodes are convs"),
            },
        )
        .collect();
    let first = &convs[0].0;
    let w = ConvWeights {
        w: convs
            .iter()
            .flat_map(|(c, _)| c.w.iter().copied())
            .collect(),
        b: convs
            .iter()
            .flat_map(|(c, _)| c.b.iter().copied())
            .collect(),
        cout: convs.iter().map(|(c, _)| c.cout).sum(),
        cin_g: first.cin_g,
        k: first.k,
        s: first.s,
        p: first.p,
        groups: 1,
        dilated: None,
        ids: convs.iter().flat_map(|(c, _)| c.ids.clone()).collect(),
    };
    let cout = w.cout;
    let merged = g.insert(
        NodeOp::Conv {
            x,
            w: Box::new(w),
            act: convs[0].1,
            add: None,
        },
        cout,
    );
    let at = grp
        .iter()
        .filter_map(|r| g.order.iter().position(|o| o == r))
        .min()
        .expect("stacked convs are in the order");
    g.order.insert(at, merged);
    let mut off = 0;
    for (&r, (c, _)) in grp.iter().zip(&convs) {
        g.nodes[r].op = NodeOp::Slice { x: merged, off };
        off += c.cout;
    }
}

fn fuse_adds(g: &mut Graph) {
    let mut uses = g.uses();
    let mut pos = vec![usize::MAX; g.nodes.len()];
    for (i, &id) in g.order.iter().enumerate() {
        pos[id] = i;
    }
    for i in 0..g.order.len() {
        let id = g.order[i];
        let NodeOp::Add {
            a,
            b,
            act: Act::None,
        } = g.nodes[id].op
        else {
            continue;
        };
        let (a, b) = (g.resolve(a), g.resolve(b));
        // The second term first: Ultralytics writes `x + f(x)` for residuals.
        for (p, other) in [(b, a), (a, b)] {
            if p == other || uses[p] != 1 || pos[other] >= pos[p] {
                continue;
            }
            let slot = match &mut g.nodes[p].op {
                NodeOp::Conv { w, add, .. } if takes_add(w) => add,
                NodeOp::Affine { add, .. } => add,
                _ => continue,
            };
            if slot.is_some() {
                continue;
            }
            *slot = Some(other);
            g.nodes[id].op = NodeOp::Alias(p);
            uses[p] = uses[id];
            break;
        }
    }
}

/// Resolves aliases in every input and keeps, in order, only the nodes the outputs need.
fn prune(g: &mut Graph) {
    let resolved: Vec<Id> = (0..g.nodes.len()).map(|i| g.resolve(i)).collect();
    for o in g.outputs.iter_mut() {
        *o = resolved[*o];
    }
    for n in g.nodes.iter_mut() {
        if !matches!(n.op, NodeOp::Alias(_)) {
            n.op.map_inputs(|x| resolved[x]);
        }
    }
    let mut live = vec![false; g.nodes.len()];
    for &o in &g.outputs {
        live[o] = true;
    }
    live[g.input] = true;
    for &id in g.order.iter().rev() {
        if live[id] && !matches!(g.nodes[id].op, NodeOp::Alias(_)) {
            for x in g.nodes[id].op.inputs() {
                live[x] = true;
            }
        }
    }
    g.order
        .retain(|&id| live[id] && !matches!(g.nodes[id].op, NodeOp::Alias(_)));
}
