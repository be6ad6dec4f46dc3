//! The WGSL expressions `DArray::map_wgsl` accepts: parsed once, emitted as WGSL for GPUs
//! and evaluated by the CPU implementation of the same kernel.
//!
//! The subset: numbers, `x`, `+ - * /`, unary `-`, parentheses, and the functions
//! `abs sqrt exp log sin cos tanh` (one argument) and `pow min max` (two).

use std::sync::Arc;

use super::element::Float;

/// Elements evaluated at a time: small enough that every intermediate stays in L1.
const CHUNK: usize = 1024;

/// An expression outside the supported subset, with where in it the problem is; a
/// [`DArray::map_wgsl`](crate::DArray::map_wgsl) of it is an
/// [`ArrayError::Expr`](crate::ArrayError::Expr).
///
/// ```
/// use dagger::prelude::*;
///
/// let ctx = Context::builder().threads(1).build()?;
/// let a = DArray::<f32>::ones(&ctx, [4], Blocks::new([2]))?;
/// let Err(ArrayError::Expr(e)) = a.map_wgsl("x * cosh(x)") else { panic!("cosh is not supported") };
/// assert_eq!(e.at, 4);
/// assert!(e.to_string().starts_with("`x * cosh(x)` at byte 4: "), "{e}");
/// assert!(a.map_wgsl("x * cos(x)").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expr}` at byte {at}: {message} (supported: numbers, x, + - * /, unary -, parentheses, abs sqrt exp log sin cos tanh pow min max)")]
pub struct ExprError {
    /// The expression.
    pub expr: String,
    /// The byte offset of the problem.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Abs,
    Sqrt,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Pow,
    Min,
    Max,
}

impl Func {
    fn parse(name: &str) -> Option<Func> {
        Some(match name {
            "abs" => Func::Abs,
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "log" => Func::Log,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tanh" => Func::Tanh,
            "pow" => Func::Pow,
            "min" => Func::Min,
            "max" => Func::Max,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Sqrt => "sqrt",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tanh => "tanh",
            Func::Pow => "pow",
            Func::Min => "min",
            Func::Max => "max",
        }
    }

    fn arity(self) -> usize {
        match self {
            Func::Pow | Func::Min | Func::Max => 2,
            _ => 1,
        }
    }
}

/// A parsed expression in `x`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    X,
    Num(f64),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, at: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            expr: self.src.to_owned(),
            at,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.src[self.pos..].starts_with(|c: char| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.src[self.pos..].chars().next()
    }

    fn expect(&mut self, c: char) -> Result<(), ExprError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(self.pos, format!("expected `{c}`")))
        }
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
        Ok(e)
    }

    fn product(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some('-') {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let start = self.pos;
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let e = self.sum()?;
                self.expect(')')?;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.pos;
                let bytes = self.src.as_bytes();
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_digit()
                        || bytes[end] == b'.'
                        || ((bytes[end] == b'e' || bytes[end] == b'E') && end > start)
                        || ((bytes[end] == b'-' || bytes[end] == b'+')
                            && end > start
                            && (bytes[end - 1] == b'e' || bytes[end - 1] == b'E')))
                {
                    end += 1;
                }
                let text = &self.src[start..end];
                let v: f64 = text
                    .parse()
                    .map_err(|_| self.err(start, format!("`{text}` is not a number")))?;
                self.pos = end;
                Ok(Expr::Num(v))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.pos;
                let rest = &self.src[start..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..len];
                self.pos += len;
                if name == "x" {
                    return Ok(Expr::X);
                }
                let f = Func::parse(name).ok_or_else(|| {
                    self.err(
                        start,
                        format!("unknown name `{name}` (the variable is `x`)"),
                    )
                })?;
                self.expect('(')?;
                let mut args = vec![self.sum()?];
                while self.peek() == Some(',') {
                    self.pos += 1;
                    args.push(self.sum()?);
                }
                self.expect(')')?;
                if args.len() != f.arity() {
                    return Err(self.err(
                        start,
                        format!(
                            "`{name}` takes {} argument(s), got {}",
                            f.arity(),
                            args.len()
                        ),
                    ));
                }
                Ok(Expr::Call(f, args))
            }
            Some(c) => Err(self.err(start, format!("unexpected `{c}`"))),
            None => Err(self.err(start, "unexpected end of expression")),
        }
    }
}

impl Expr {
    /// Parses `src`, rejecting anything outside the subset.
    pub(crate) fn parse(src: &str) -> Result<Expr, ExprError> {
        let mut p = Parser { src, pos: 0 };
        let e = p.sum()?;
        if let Some(c) = p.peek() {
            return Err(p.err(p.pos, format!("unexpected `{c}` after the expression")));
        }
        Ok(e)
    }

    /// Whether the expression calls `exp`, `log`, `pow` or trigonometry.
    pub(crate) fn transcendental(&self) -> bool {
        match self {
            Expr::X | Expr::Num(_) => false,
            Expr::Neg(e) => e.transcendental(),
            Expr::Bin(_, a, b) => a.transcendental() || b.transcendental(),
            Expr::Call(f, args) => {
                !matches!(f, Func::Abs | Func::Sqrt | Func::Min | Func::Max)
                    || args.iter().any(Expr::transcendental)
            }
        }
    }

    /// The expression as WGSL over `x: T`.
    pub(crate) fn to_wgsl(&self) -> String {
        match self {
            Expr::X => "x".into(),
            Expr::Num(v) => format!("T({v:?})"),
            Expr::Neg(e) => format!("(-{})", e.to_wgsl()),
            Expr::Bin(op, a, b) => format!("({} {op} {})", a.to_wgsl(), b.to_wgsl()),
            Expr::Call(f, args) => {
                let a: Vec<String> = args.iter().map(Expr::to_wgsl).collect();
                format!("{}({})", f.name(), a.join(", "))
            }
        }
    }

    /// Evaluates the expression for each element of `x` into `out`, a chunk at a time.
    pub(crate) fn eval<T: Float>(&self, x: &[T], out: &mut [T]) {
        let mut scratch: Vec<Vec<T>> = Vec::new();
        for (xs, os) in x.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            self.eval_chunk(xs, os, &mut scratch);
        }
    }

    /// Applies `stages` in order to each element of `x` into `out`, a chunk at a time, with
    /// no array-sized temporary: a fused chain of maps.
    pub(crate) fn eval_chain<T: Float>(stages: &[Arc<Expr>], x: &[T], out: &mut [T]) {
        let mut scratch: Vec<Vec<T>> = Vec::new();
        let (mut a, mut b) = (vec![T::ZERO; CHUNK], vec![T::ZERO; CHUNK]);
        for (xs, os) in x.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            Self::chain_chunk(stages, xs, os, (&mut a, &mut b), &mut scratch);
        }
    }

    /// `stages` applied to a chunk `x` into `out` (of the same length), through two
    /// chunk-sized buffers.
    fn chain_chunk<T: Float>(
        stages: &[Arc<Expr>],
        x: &[T],
        out: &mut [T],
        (a, b): (&mut [T], &mut [T]),
        scratch: &mut Vec<Vec<T>>,
    ) {
        let n = x.len();
        let Some((last, rest)) = stages.split_last() else {
            out.copy_from_slice(x);
            return;
        };
        let (mut cur, mut next) = (&mut a[..n], &mut b[..n]);
        for (i, s) in rest.iter().enumerate() {
            if i == 0 {
                s.eval_chunk(x, cur, scratch);
            } else {
                s.eval_chunk(cur, next, scratch);
                std::mem::swap(&mut cur, &mut next);
            }
        }
        if rest.is_empty() {
            last.eval_chunk(x, out, scratch);
        } else {
            last.eval_chunk(cur, out, scratch);
        }
    }

    /// `f`-fold of `stages` applied to each element of the non-empty `x`, a chunk at a
    /// time: the same values, combined in the same order, as
    /// `dagger_cpu::elementwise::fold` over the mapped array (eight lanes, element `g >= 8`
    /// into lane `g % 8`, the lanes combined in order, then the elements past the last whole
    /// group of eight), so fused and unfused reductions agree to the bit.
    pub(crate) fn fold_chain<T: Float>(stages: &[Arc<Expr>], x: &[T], f: impl Fn(T, T) -> T) -> T {
        const L: usize = 8;
        let mut scratch: Vec<Vec<T>> = Vec::new();
        let (mut a, mut b) = (vec![T::ZERO; CHUNK], vec![T::ZERO; CHUNK]);
        let mut mapped = [T::ZERO; CHUNK];
        let n = x.len();
        if n < 2 * L {
            let m = &mut mapped[..n];
            Self::chain_chunk(stages, x, m, (&mut a, &mut b), &mut scratch);
            return dagger_cpu::elementwise::fold(m, f);
        }
        let whole = L + (n - L) / L * L;
        let mut lanes = [T::ZERO; L];
        for (c, xs) in x[..whole].chunks(CHUNK).enumerate() {
            let m = &mut mapped[..xs.len()];
            Self::chain_chunk(stages, xs, m, (&mut a, &mut b), &mut scratch);
            for (i, &v) in m.iter().enumerate() {
                let g = c * CHUNK + i;
                lanes[g % L] = if g < L { v } else { f(lanes[g % L], v) };
            }
        }
        let mut acc = lanes[1..].iter().fold(lanes[0], |a, &v| f(a, v));
        // The elements past the last whole group of eight, onto the combined lanes.
        let tail = &x[whole..];
        let m = &mut mapped[..tail.len()];
        Self::chain_chunk(stages, tail, m, (&mut a, &mut b), &mut scratch);
        for &v in m.iter() {
            acc = f(acc, v);
        }
        acc
    }

    fn eval_chunk<T: Float>(&self, x: &[T], out: &mut [T], scratch: &mut Vec<Vec<T>>) {
        let take = |scratch: &mut Vec<Vec<T>>| {
            let mut v = scratch.pop().unwrap_or_default();
            v.clear();
            v.resize(x.len(), T::ZERO);
            v
        };
        match self {
            Expr::X => out.copy_from_slice(x),
            Expr::Num(v) => out.fill(T::from_f64(*v)),
            Expr::Neg(e) => {
                e.eval_chunk(x, out, scratch);
                out.iter_mut().for_each(|o| *o = -*o);
            }
            Expr::Bin(op, a, b) if matches!((&**a, &**b), (Expr::X, Expr::Num(_))) => {
                // `x op c`, the most common map, straight from the input.
                let Expr::Num(c) = **b else { unreachable!() };
                let c = T::from_f64(c);
                let it = out.iter_mut().zip(x);
                match op {
                    '+' => it.for_each(|(o, &v)| *o = v.add(c)),
                    '-' => it.for_each(|(o, &v)| *o = v.sub(c)),
                    '*' => it.for_each(|(o, &v)| *o = v.mul(c)),
                    _ => it.for_each(|(o, &v)| *o = v.div(c)),
                }
            }
            Expr::Bin(op, a, b) => {
                a.eval_chunk(x, out, scratch);
                macro_rules! apply {
                    ($rhs:expr, $v:ident, $get:expr) => {
                        match op {
                            '+' => out
                                .iter_mut()
                                .zip($rhs)
                                .for_each(|(o, $v)| *o = o.add($get)),
                            '-' => out
                                .iter_mut()
                                .zip($rhs)
                                .for_each(|(o, $v)| *o = o.sub($get)),
                            '*' => out
                                .iter_mut()
                                .zip($rhs)
                                .for_each(|(o, $v)| *o = o.mul($get)),
                            _ => out
                                .iter_mut()
                                .zip($rhs)
                                .for_each(|(o, $v)| *o = o.div($get)),
                        }
                    };
                }
                if let Expr::Num(c) = **b {
                    let c = T::from_f64(c);
                    apply!(std::iter::repeat(()), _v, c);
                } else {
                    let mut t = take(scratch);
                    b.eval_chunk(x, &mut t, scratch);
                    apply!(&t, v, *v);
                    scratch.push(t);
                }
            }
            Expr::Call(func, args) => {
                args[0].eval_chunk(x, out, scratch);
                if args.len() == 2 {
                    let mut t = take(scratch);
                    args[1].eval_chunk(x, &mut t, scratch);
                    let f: fn(T, T) -> T = match func {
                        Func::Pow => T::powf,
                        Func::Min => T::min_of,
                        _ => T::max_of,
                    };
                    out.iter_mut().zip(&t).for_each(|(o, &v)| *o = f(*o, v));
                    scratch.push(t);
                } else {
                    let f: fn(T) -> T = match func {
                        Func::Abs => T::abs,
                        Func::Sqrt => T::sqrt,
                        Func::Exp => T::exp,
                        Func::Log => T::ln,
                        Func::Sin => T::sin,
                        Func::Cos => T::cos,
                        _ => T::tanh,
                    };
                    out.iter_mut().for_each(|o| *o = f(*o));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates_the_subset() {
        let e = Expr::parse("x * 2.0 + 1.0").unwrap();
        assert_eq!(e.to_wgsl(), "((x * T(2.0)) + T(1.0))");
        let mut out = [0.0f32; 3];
        e.eval(&[0.0, 1.0, -2.0], &mut out);
        assert_eq!(out, [1.0, 3.0, -3.0]);
        let e =
            Expr::parse("max(-x, pow(x, 2)) / (1 + abs(x)) - sqrt(exp(log(4.0)))+1e-3").unwrap();
        let mut out = [0.0f64; 2];
        e.eval(&[3.0, -1.0], &mut out);
        let f = |x: f64| (-x).max(x.powf(2.0)) / (1.0 + x.abs()) - 4f64.ln().exp().sqrt() + 1e-3;
        assert!((out[0] - f(3.0)).abs() < 1e-12 && (out[1] - f(-1.0)).abs() < 1e-12);
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for (src, at) in [
            ("y + 1", 0),
            ("x +", 3),
            ("floor(x)", 0),
            ("pow(x)", 0),
            ("x $ 2", 2),
            ("(x", 2),
        ] {
            let e = Expr::parse(src).unwrap_err();
            assert_eq!(e.at, at, "{src}: {e}");
        }
        assert!(Expr::parse("x; }")
            .unwrap_err()
            .to_string()
            .contains("unexpected `;`"));
    }
}
