//! Deep queries: how deep a PromQL expression nests, and running the code that recurses
//! over it on a stack big enough for it.
//!
//! Parsing (promql-parser checks each new node's type by walking its operands), planning
//! ([`crate::plan`] recurses over the expression), and copying, printing and dropping an
//! expression all recurse once per nesting level. A query with thousands of levels (300
//! nested parentheses, unary minus signs or `x + x + ...` terms were enough) overflowed a
//! 2 MiB tokio worker stack and aborted the whole process. Prometheus answers such
//! queries at depth 5,000 (Go's stacks grow); so does Strata, up to [`MAX_DEPTH`]:
//! - [`parse`](crate::query::parse) runs the parser on a stack sized for the query's
//!   length (nesting can be no deeper than the text is long; at most [`MAX_QUERY_BYTES`]),
//!   measures the depth without recursing ([`depth`]) and refuses what nests deeper than
//!   [`MAX_DEPTH`] (`bad_data`, naming the limit);
//! - a query's evaluation runs in [`OnStack`], which polls it on a stack of
//!   [`STACK_PER_LEVEL`] bytes per level, and the planner's recursion grows its stack
//!   segment by segment ([`grow`]);
//! - DataFusion's executors recurse once per plan node when they start and poll their
//!   inputs, on whatever stack their task runs: the planner runs a plan that grows deeper
//!   than [`crate::plan::MAX_PLAN_HEIGHT`] nodes before planning on top of it, so that no
//!   plan it hands DataFusion is deeper than that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use promql_parser::parser::Expr as P;

/// The deepest nesting a query may have (the nodes on the longest path from the
/// expression's root to a leaf, parentheses included): 4x the 5,000 at which Prometheus
/// was seen answering. Deeper queries get `bad_data` naming this limit.
pub const MAX_DEPTH: usize = 20_000;

/// The longest query text accepted, bytes (1 MiB). VictoriaMetrics refuses queries
/// over 16 KiB by default (`-search.maxQueryLen`); Prometheus has no limit of its own
/// beyond the HTTP request's size.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Stack reserved per nesting level for the code that recurses over an expression
/// outside the planner (promql-parser's type checks, `Clone`, `Display` and `Drop`, the
/// planner's helpers), bytes: generous for unoptimized builds, whose frames are the
/// largest.
pub const STACK_PER_LEVEL: usize = 2048;

/// Depth up to which a query runs on the stack it is given, as before (a tokio worker's
/// 2 MiB holds it): no stack is measured or grown for it.
pub const SHALLOW: usize = 64;

/// Stack that is always left for whatever runs on top of the recursion, bytes.
const BASE_STACK: usize = 256 * 1024;

/// What the planner keeps free before it recurses one level ([`grow`]), bytes; and the
/// size of each new segment it then takes.
const RED_ZONE: usize = 256 * 1024;
const SEGMENT: usize = 8 << 20;

/// The nesting depth of `e`: the nodes on the longest path from `e` to a leaf (a
/// selector or a literal has depth 1). Iterative, so any depth is measured safely.
pub fn depth(e: &P) -> usize {
    let mut deepest = 0;
    let mut todo: Vec<(&P, usize)> = vec![(e, 1)];
    while let Some((e, d)) = todo.pop() {
        deepest = deepest.max(d);
        match e {
            P::Aggregate(a) => {
                todo.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    todo.push((p, d + 1));
                }
            }
            P::Unary(u) => todo.push((&u.expr, d + 1)),
            P::Binary(b) => {
                todo.push((&b.lhs, d + 1));
                todo.push((&b.rhs, d + 1));
            }
            P::Paren(p) => todo.push((&p.expr, d + 1)),
            P::Subquery(s) => todo.push((&s.expr, d + 1)),
            P::Call(c) => todo.extend(c.args.args.iter().map(|a| (a.as_ref(), d + 1))),
            P::Extension(x) => todo.extend(x.expr.children().iter().map(|c| (c, d + 1))),
            P::NumberLiteral(_)
            | P::StringLiteral(_)
            | P::VectorSelector(_)
            | P::MatrixSelector(_) => {}
        }
    }
    deepest
}

/// Stack bytes the non-planner recursion over an expression `depth` levels deep needs.
pub fn stack_for(depth: usize) -> usize {
    depth
        .saturating_mul(STACK_PER_LEVEL)
        .saturating_add(BASE_STACK)
}

/// Runs `f` with at least `bytes` of stack: on the current stack when that much is left,
/// else on a new stack of that size (`stacker`).
pub fn with_stack<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(bytes, bytes, f)
}

/// Runs one level of a recursion that may go deep: on the current stack while
/// [`RED_ZONE`] bytes are left, else on a new segment of 8 MiB.
pub fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}

/// A future polled with at least the stack its query needs: `need` bytes (0 until the
/// query is parsed and its depth known; see [`stack_for`]). A query of ordinary depth
/// fits the current stack and is polled as it is.
pub struct OnStack<F> {
    fut: Pin<Box<F>>,
    need: Arc<AtomicUsize>,
}

impl<F: Future> OnStack<F> {
    /// `fut`, polled with `need` bytes of stack (which `fut` sets once it knows).
    pub fn new(fut: F, need: Arc<AtomicUsize>) -> Self {
        OnStack {
            fut: Box::pin(fut),
            need,
        }
    }
}

impl<F: Future> Future for OnStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let need = self.need.load(Ordering::Relaxed);
        let fut = self.fut.as_mut();
        if need == 0 {
            return fut.poll(cx);
        }
        with_stack(need, || fut.poll(cx))
    }
}

/// A future whose every poll runs through [`grow`]: one level of the planner's async
/// recursion.
pub struct Grown<F: ?Sized>(pub Pin<Box<F>>);

impl<F: Future + ?Sized> Future for Grown<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let fut = self.0.as_mut();
        grow(|| fut.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_the_longest_path() {
        let d = |q: &str| depth(&promql_parser::parser::parse(q).unwrap());
        assert_eq!(d("up"), 1);
        assert_eq!(d("(up)"), 2);
        // Binary(Binary(up, up), Paren(up)).
        assert_eq!(d("up + up + (up)"), 3);
        assert_eq!(d("sum(rate(up[5m]))"), 3);
        assert_eq!(d("topk(scalar(up), up)"), 3);
        // Call, Subquery, Paren, Binary, up.
        assert_eq!(d("max_over_time((up + 1)[5m:1m])"), 5);
        let deep = format!("{}up{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(with_stack(stack_for(5001), || d(&deep)), 5001);
    }
}
