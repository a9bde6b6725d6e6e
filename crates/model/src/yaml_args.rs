//! A model YAML row's arguments after Ultralytics' resolution (`nc`, `"None"`, `True` ...), the row context
//! errors name, and the typed readers every module's parser uses.

use crate::error::{ModelError, Result};
use serde_yaml::Value;

pub fn make_divisible(x: f64, divisor: usize) -> usize {
    ((x / divisor as f64).ceil() as usize) * divisor
}

/// A row argument after Ultralytics' string resolution (`"nc"`, `"None"`, `"True"` ...).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Arg>),
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::None => write!(f, "None"),
            Arg::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Float(x) => write!(f, "{x:?}"),
            Arg::Str(s) => write!(f, "'{s}'"),
            Arg::List(v) => {
                write!(f, "[")?;
                for (i, a) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, "]")
            }
        }
    }
}

pub fn args_display(args: &[Arg]) -> String {
    Arg::List(args.to_vec()).to_string()
}

pub struct Ctx<'a> {
    pub source: &'a str,
    pub row: usize,
}

impl Ctx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Yaml {
            file: self.source.to_string(),
            row: Some(self.row),
            msg: msg.into(),
        }
    }
}

pub fn resolve_arg(v: &Value, locals: &[(&str, Arg)], ctx: &Ctx) -> Result<Arg> {
    Ok(match v {
        Value::Null => Arg::None,
        Value::Bool(b) => Arg::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Arg::Int(i)
            } else {
                Arg::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => {
            if let Some((_, a)) = locals.iter().find(|(k, _)| *k == s.as_str()) {
                a.clone()
            } else {
                literal_eval(s)
            }
        }
        Value::Sequence(seq) => Arg::List(
            seq.iter()
                .map(|x| resolve_arg(x, locals, ctx))
                .collect::<Result<_>>()?,
        ),
        other => return Err(ctx.err(format!("unsupported argument {other:?}"))),
    })
}

/// The subset of Python's `ast.literal_eval` that model YAML uses; anything else stays a string.
pub fn literal_eval(s: &str) -> Arg {
    let t = s.trim();
    match t {
        "None" => return Arg::None,
        "True" => return Arg::Bool(true),
        "False" => return Arg::Bool(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Arg::Int(i);
    }
    if let Ok(x) = t.parse::<f64>() {
        return Arg::Float(x);
    }
    Arg::Str(s.to_string())
}

pub fn as_usize(a: &Arg, what: &str, ctx: &Ctx) -> Result<usize> {
    match a {
        Arg::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(ctx.err(format!(
            "{what}: expected a non-negative integer, got {other}"
        ))),
    }
}

pub fn as_bool(a: &Arg, what: &str, ctx: &Ctx) -> Result<bool> {
    match a {
        Arg::Bool(b) => Ok(*b),
        Arg::Int(0) => Ok(false),
        Arg::Int(1) => Ok(true),
        other => Err(ctx.err(format!("{what}: expected True or False, got {other}"))),
    }
}

pub fn as_f64(a: &Arg, what: &str, ctx: &Ctx) -> Result<f64> {
    match a {
        Arg::Int(i) => Ok(*i as f64),
        Arg::Float(x) => Ok(*x),
        other => Err(ctx.err(format!("{what}: expected a number, got {other}"))),
    }
}

pub fn check_arity(args: &[Arg], min: usize, max: usize, sig: &str, ctx: &Ctx) -> Result<()> {
    if args.len() < min || args.len() > max {
        return Err(ctx.err(format!(
            "wrong number of args: got {} ({}), expected {sig}",
            args.len(),
            args_display(args)
        )));
    }
    Ok(())
}

/// Argument `i` of a row parsed by `parse`, or `default` where the row leaves it out.
pub fn optional<T>(
    r: &[Arg],
    i: usize,
    default: T,
    parse: impl Fn(&Arg) -> Result<T>,
) -> Result<T> {
    r.get(i)
        .map(parse)
        .transpose()
        .map(|v| v.unwrap_or(default))
}
