//! Just enough of Python's pickle to read the plain attributes of the model object in an Ultralytics checkpoint
//! (its `yaml` dict and `names`), which `pytorch-reader` does not return: it reads a pickled `nn.Module` as its
//! tensors only. Classes are never looked up or run: an object is its class name, its constructor arguments
//! and the state `BUILD` gave it. Protocols 2 to 5 (torch.save writes 2).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A value of the pickle.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Rc<RefCell<Items>>),
    Tuple(Rc<Items>),
    Dict(Rc<RefCell<Pairs>>),
    /// A class or function named by `GLOBAL` (never resolved).
    Global(Rc<String>),
    /// An object: its class, constructor arguments and `BUILD` state.
    Object(Rc<RefCell<Object>>),
}

#[derive(Debug)]
pub struct Object {
    pub class: String,
    pub args: Value,
    pub state: Value,
}

/// The values of a list or tuple. Freed without recursion (see [`free`]).
#[derive(Debug, Default)]
pub struct Items(pub Vec<Value>);

/// The entries of a dict, in insertion order. Freed without recursion (see [`free`]).
#[derive(Debug, Default)]
pub struct Pairs(pub Vec<(Value, Value)>);

impl std::ops::Deref for Items {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl std::ops::DerefMut for Items {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        &mut self.0
    }
}

impl std::ops::Deref for Pairs {
    type Target = Vec<(Value, Value)>;
    fn deref(&self) -> &Vec<(Value, Value)> {
        &self.0
    }
}

impl std::ops::DerefMut for Pairs {
    fn deref_mut(&mut self) -> &mut Vec<(Value, Value)> {
        &mut self.0
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        free(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        free(
            std::mem::take(&mut self.0)
                .into_iter()
                .flat_map(|(k, v)| [k, v])
                .collect(),
        );
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let args = std::mem::replace(&mut self.args, Value::None);
        let state = std::mem::replace(&mut self.state, Value::None);
        free(vec![args, state]);
    }
}

/// Frees values through a worklist on the heap: a pickle can nest lists a million deep (one byte per level),
/// and freeing each level from the one above would overflow the stack. A value still shared elsewhere is only
/// released here.
fn free(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        match v {
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    work.append(&mut cell.into_inner().0);
                }
            }
            Value::Tuple(rc) => {
                if let Ok(mut items) = Rc::try_unwrap(rc) {
                    work.append(&mut items.0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    let mut pairs = cell.into_inner();
                    for (k, v) in pairs.0.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Value::Object(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    let mut o = cell.into_inner();
                    work.push(std::mem::replace(&mut o.args, Value::None));
                    work.push(std::mem::replace(&mut o.state, Value::None));
                }
            }
            _ => {}
        }
    }
}

impl Value {
    /// The entry `key` of a dict, or of an object's state dict.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d
                .borrow()
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v.clone()),
            Value::Object(o) => o.borrow().state.get(key),
            _ => None,
        }
    }
}

enum Item {
    Mark,
    V(Value),
}

fn pop(stack: &mut Vec<Item>) -> Result<Value, String> {
    match stack.pop() {
        Some(Item::V(v)) => Ok(v),
        Some(Item::Mark) => Err("a value was expected, found a mark".into()),
        None => Err("stack underflow".into()),
    }
}

fn pop_mark(stack: &mut Vec<Item>) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    loop {
        match stack.pop() {
            Some(Item::Mark) => break,
            Some(Item::V(v)) => out.push(v),
            None => return Err("no mark on the stack".into()),
        }
    }
    out.reverse();
    Ok(out)
}

/// Reads a pickle into its root value.
pub fn load(b: &[u8]) -> Result<Value, String> {
    let mut i = 0usize;
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = b.get(*i..*i + n).ok_or("the pickle ends early")?;
        *i += n;
        Ok(s)
    };
    let u32le = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let line = |i: &mut usize| -> Result<String, String> {
        let end = b[*i..]
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated line")?;
        let s = String::from_utf8_lossy(&b[*i..*i + end]).into_owned();
        *i += end + 1;
        Ok(s)
    };
    loop {
        let op = *take(&mut i, 1)?.first().unwrap_or(&b'.');
        match op {
            0x80 => i += 1,                 // PROTO
            0x95 => i += 8,                 // FRAME
            b'.' => return pop(&mut stack), // STOP
            b'(' => stack.push(Item::Mark), // MARK
            b'N' => stack.push(Item::V(Value::None)),
            0x88 => stack.push(Item::V(Value::Bool(true))),
            0x89 => stack.push(Item::V(Value::Bool(false))),
            b'}' => stack.push(Item::V(Value::Dict(Default::default()))),
            b']' => stack.push(Item::V(Value::List(Default::default()))),
            b')' => stack.push(Item::V(Value::Tuple(Default::default()))),
            b'K' => {
                let v = take(&mut i, 1)?[0];
                stack.push(Item::V(Value::Int(v as i64)))
            }
            b'M' => {
                let s = take(&mut i, 2)?;
                stack.push(Item::V(Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64)))
            }
            b'J' => {
                let s = take(&mut i, 4)?;
                stack.push(Item::V(Value::Int(u32le(s) as i32 as i64)))
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    take(&mut i, 1)?[0] as usize
                } else {
                    u32le(take(&mut i, 4)?) as usize
                };
                let s = take(&mut i, n)?;
                let mut v: i64 = 0;
                for (k, byte) in s.iter().enumerate().take(8) {
                    v |= (*byte as i64) << (8 * k);
                }
                if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Item::V(Value::Int(v)))
            }
            b'G' => {
                let s = take(&mut i, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                stack.push(Item::V(Value::Float(f64::from_be_bytes(a))))
            }
            b'X' | 0x8c | b'T' | b'U' | b'B' | b'C' | 0x8e => {
                let n = match op {
                    0x8c | b'U' | b'C' => take(&mut i, 1)?[0] as usize,
                    0x8e => {
                        let s = take(&mut i, 8)?;
                        u64::from_le_bytes(s.try_into().unwrap_or([0; 8])) as usize
                    }
                    _ => u32le(take(&mut i, 4)?) as usize,
                };
                let s = take(&mut i, n)?.to_vec();
                stack.push(Item::V(match op {
                    b'B' | b'C' | 0x8e => Value::Bytes(s),
                    _ => Value::Str(String::from_utf8_lossy(&s).into_owned()),
                }))
            }
            b'q' => {
                let k = take(&mut i, 1)?[0] as u32;
                memo.insert(k, peek(&stack)?);
            }
            b'r' => {
                let k = u32le(take(&mut i, 4)?);
                memo.insert(k, peek(&stack)?);
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, peek(&stack)?);
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    take(&mut i, 1)?[0] as u32
                } else {
                    u32le(take(&mut i, 4)?)
                };
                let v = memo.get(&k).cloned().ok_or(format!("memo {k} missing"))?;
                stack.push(Item::V(v))
            }
            b'c' => {
                let m = line(&mut i)?;
                let n = line(&mut i)?;
                stack.push(Item::V(Value::Global(Rc::new(format!("{m}.{n}")))))
            }
            0x93 => {
                let n = pop(&mut stack)?;
                let m = pop(&mut stack)?;
                let s = |v: Value| match v {
                    Value::Str(s) => s,
                    _ => String::new(),
                };
                stack.push(Item::V(Value::Global(Rc::new(format!(
                    "{}.{}",
                    s(m),
                    s(n)
                )))))
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::Tuple(Rc::new(Items(items)))))
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items: Vec<Value> =
                    (0..n).map(|_| pop(&mut stack)).collect::<Result<_, _>>()?;
                items.reverse();
                stack.push(Item::V(Value::Tuple(Rc::new(Items(items)))))
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Value::List(l) = peek(&stack)? {
                    l.borrow_mut().push(v);
                }
            }
            // APPENDS; ADDITEMS (a set is read as a list)
            b'e' | 0x90 => {
                let items = pop_mark(&mut stack)?;
                if let Value::List(l) = peek(&stack)? {
                    l.borrow_mut().extend(items);
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                if let Value::Dict(d) = peek(&stack)? {
                    d.borrow_mut().push((k, v));
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if let Value::Dict(d) = peek(&stack)? {
                    let mut d = d.borrow_mut();
                    for kv in items.chunks(2) {
                        if let [k, v] = kv {
                            d.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
            0x8f => stack.push(Item::V(Value::List(Default::default()))), // EMPTY_SET
            0x91 => {
                let items = pop_mark(&mut stack)?;
                stack.push(Item::V(Value::List(Rc::new(RefCell::new(Items(items))))))
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                stack.push(Item::V(instance(&f, args)))
            }
            0x92 => {
                let _kwargs = pop(&mut stack)?;
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                stack.push(Item::V(instance(&f, args)))
            }
            b'b' => {
                let state = pop(&mut stack)?;
                if let Value::Object(o) = peek(&stack)? {
                    o.borrow_mut().state = state;
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Item::V(object("persistent".into(), pid)))
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'2' => {
                let v = peek(&stack)?;
                stack.push(Item::V(v))
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {}",
                    i - 1
                ))
            }
        }
    }
}

fn object(class: String, args: Value) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        class,
        args,
        state: Value::None,
    })))
}

/// What calling `f` (a class or function named by `GLOBAL`) with `args` gives: an object standing for the
/// call, or an empty dict for an OrderedDict (every module table), which SETITEMS then fills.
fn instance(f: &Value, args: Value) -> Value {
    let class = match f {
        Value::Global(g) => g.to_string(),
        _ => String::new(),
    };
    if class == "collections.OrderedDict" {
        Value::Dict(Default::default())
    } else {
        object(class, args)
    }
}

fn peek(stack: &[Item]) -> Result<Value, String> {
    match stack.last() {
        Some(Item::V(v)) => Ok(v.clone()),
        _ => Err("a value was expected on the stack".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::{load, Value};

    #[test]
    fn an_object_with_a_dict_state() {
        // pickle.dumps of M() with __dict__ {"yaml": {"nc": 3, "s": [1.5, "a"]}, "names": {0: "x"}}, protocol 2.
        let b = b"\x80\x02c__main__\nM\nq\x00)\x81q\x01}q\x02(X\x04\x00\x00\x00yamlq\x03}q\x04(X\x02\x00\x00\x00ncq\x05K\x03X\x01\x00\x00\x00sq\x06]q\x07(G?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00aq\x08euX\x05\x00\x00\x00namesq\t}q\nK\x00X\x01\x00\x00\x00xq\x0bsub.";
        let v = load(b).unwrap();
        let y = v.get("yaml").unwrap();
        assert!(matches!(y.get("nc"), Some(Value::Int(3))));
        match y.get("s") {
            Some(Value::List(l)) => {
                let l = l.borrow();
                assert!(matches!(l[0], Value::Float(f) if f == 1.5));
                assert!(matches!(&l[1], Value::Str(s) if s == "a"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(v.get("names"), Some(Value::Dict(_))));
    }
}
