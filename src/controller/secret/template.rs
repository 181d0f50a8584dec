//! Secret templates: a bounded subset of MiniJinja.
//!
//! Templates come from any namespace, so rendering one must not be able to exhaust the
//! operator's memory or CPU. MiniJinja's own limits are not enough: `{{ 'x' * 100000000 }}`
//! allocates 100 MB in one step, and a chain of `{% set %}` doubles a string per line. So a
//! template is parsed first and only a subset is accepted: output, `if`, `for`, operators
//! whose result is at most as large as their operands together, and filters with linear
//! output. Every render then runs with fuel (a bound on executed instructions) and writes
//! into a buffer that refuses to grow past `MAX_RENDERED_VALUE`.

use std::collections::BTreeMap;
use std::io;

use minijinja::machinery::ast::{BinOp, BinOpKind, CallArg, Expr, Filter, Stmt, Test};
use minijinja::machinery::{WhitespaceConfig, parse};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use secrecy::ExposeSecret;

use super::credential::{Credential, SecretContext};
use crate::api::limits::{MAX_ENTRIES, MAX_RENDERED_VALUE, MAX_SECRET_DATA, MAX_TEMPLATE_SOURCE};
use crate::controller::kinds::SecretLayout;
use crate::controller::runtime::error::Error;

/// Instructions one template may execute: generous for any real template (a few hundred),
/// and a quick stop for nested loops.
const FUEL: u64 = 50_000;

const FILTERS: &[&str] = &[
    "tojson", "upper", "lower", "trim", "default", "d", "length", "count", "first", "last",
    "string", "escape", "e",
];
const TESTS: &[&str] = &["defined", "undefined", "none"];

/// Renders every template key, or says which key is wrong and why (never with a value).
pub fn render(
    templates: &BTreeMap<String, String>,
    layout: SecretLayout,
    cred: &Credential,
    ctx: &SecretContext<'_>,
) -> Result<BTreeMap<String, String>, Error> {
    if templates.len() > MAX_ENTRIES {
        return Err(Error::InvalidSpec(format!(
            "spec.secret.template.data has {} keys; at most {MAX_ENTRIES} are allowed",
            templates.len()
        )));
    }
    let env = environment();
    let vars = variables(layout, cred, ctx);
    let mut total = 0usize;
    let mut out = BTreeMap::new();
    for (key, source) in templates {
        let invalid =
            |why: String| Error::InvalidSpec(format!("spec.secret.template.data[{key}]: {why}"));
        check_source(source).map_err(invalid)?;
        let rendered = render_one(&env, source, &vars).map_err(invalid)?;
        total = total.saturating_add(rendered.len());
        if total > MAX_SECRET_DATA {
            return Err(Error::InvalidSpec(format!(
                "spec.secret.template.data renders to more than {} KiB in total",
                MAX_SECRET_DATA / 1024
            )));
        }
        out.insert(key.clone(), rendered);
    }
    Ok(out)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("tojson", tojson);
    env.add_filter("upper", minijinja::filters::upper);
    env.add_filter("lower", minijinja::filters::lower);
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("default", minijinja::filters::default);
    env.add_filter("d", minijinja::filters::default);
    env.add_filter("length", minijinja::filters::length);
    env.add_filter("count", minijinja::filters::length);
    env.add_filter("first", minijinja::filters::first);
    env.add_filter("last", minijinja::filters::last);
    env.add_filter("string", minijinja::filters::string);
    env.add_filter("escape", minijinja::filters::escape);
    env.add_filter("e", minijinja::filters::escape);
    env.add_test("defined", minijinja::tests::is_defined);
    env.add_test("undefined", minijinja::tests::is_undefined);
    env.add_test("none", minijinja::tests::is_none);
    env
}

/// Compact JSON with no options: MiniJinja's own `tojson` takes an `indent` argument that
/// multiplies the output size.
fn tojson(value: &Value) -> Result<Value, minijinja::Error> {
    serde_json::to_string(value)
        .map(Value::from_safe_string)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "cannot encode as JSON"))
}

fn variables<'a>(
    layout: SecretLayout,
    cred: &'a Credential,
    ctx: &SecretContext<'a>,
) -> BTreeMap<&'static str, &'a str> {
    let mut vars = BTreeMap::new();
    vars.insert("tokenId", cred.id.as_str());
    vars.insert("baseUrl", ctx.base_url);
    vars.insert("tenantId", ctx.tenant_id);
    if let Some(user) = ctx.user_id {
        vars.insert("userId", user);
    }
    if let Some(expires) = &cred.expires_at {
        vars.insert("expiresAt", expires.as_str());
    }
    match layout {
        SecretLayout::ClientCredentials => {
            vars.insert("clientId", cred.id.as_str());
            vars.insert("secret", cred.secret.expose_secret());
        }
        SecretLayout::AccessToken => {
            vars.insert("token", cred.secret.expose_secret());
        }
    }
    vars
}

/// Accepts only the bounded subset described in the module doc.
pub fn check_source(source: &str) -> Result<(), String> {
    if source.len() > MAX_TEMPLATE_SOURCE {
        return Err(format!(
            "template is longer than {} KiB",
            MAX_TEMPLATE_SOURCE / 1024
        ));
    }
    let tree = parse(
        source,
        "template",
        SyntaxConfig,
        WhitespaceConfig::default(),
    )
    // Parse errors may describe the source (the user's own text, no credential is involved
    // yet); render errors below say only their kind.
    .map_err(|e| match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{}: {detail} (line {line})", e.kind()),
        _ => format!("{}", e.kind()),
    })?;
    check_stmt(&tree)
}

fn check_stmt(stmt: &Stmt<'_>) -> Result<(), String> {
    match stmt {
        Stmt::Template(t) => t.children.iter().try_for_each(check_stmt),
        Stmt::EmitRaw(_) => Ok(()),
        Stmt::EmitExpr(e) => check_expr(&e.expr),
        Stmt::IfCond(c) => {
            check_expr(&c.expr)?;
            c.true_body
                .iter()
                .chain(&c.false_body)
                .try_for_each(check_stmt)
        }
        Stmt::ForLoop(l) => {
            if l.recursive {
                return Err("recursive loops are not allowed".into());
            }
            check_expr(&l.target)?;
            check_expr(&l.iter)?;
            if let Some(f) = &l.filter_expr {
                check_expr(f)?;
            }
            l.body.iter().chain(&l.else_body).try_for_each(check_stmt)
        }
        _ => Err("only {{ }} output, if and for are allowed (no set, with, macro, call, include or filter blocks)".into()),
    }
}

fn check_expr(expr: &Expr<'_>) -> Result<(), String> {
    match expr {
        Expr::Var(_) | Expr::Const(_) => Ok(()),
        Expr::UnaryOp(u) => check_expr(&u.expr),
        Expr::BinOp(b) => check_bin_op(b),
        Expr::Compare(c) => {
            check_expr(&c.expr)?;
            c.ops.iter().try_for_each(|op| check_expr(&op.expr))
        }
        Expr::IfExpr(i) => {
            check_expr(&i.test_expr)?;
            check_expr(&i.true_expr)?;
            i.false_expr.as_ref().map_or(Ok(()), check_expr)
        }
        Expr::Filter(f) => check_filter(f),
        Expr::Test(t) => check_test(t),
        Expr::GetAttr(g) => check_expr(&g.expr),
        Expr::GetItem(g) => {
            check_expr(&g.expr)?;
            check_expr(&g.subscript_expr)
        }
        Expr::Slice(s) => {
            check_expr(&s.expr)?;
            [&s.start, &s.stop, &s.step]
                .into_iter()
                .flatten()
                .try_for_each(check_expr)
        }
        Expr::List(l) => l.items.iter().try_for_each(check_expr),
        Expr::Map(m) => m.keys.iter().chain(&m.values).try_for_each(check_expr),
        Expr::Call(_) => Err("function and method calls are not allowed".into()),
    }
}

fn check_bin_op(b: &BinOp<'_>) -> Result<(), String> {
    // `*` repeats strings and `**` grows numbers without bound; nothing needs them.
    if matches!(
        b.op,
        BinOpKind::Mul | BinOpKind::Pow | BinOpKind::Div | BinOpKind::FloorDiv | BinOpKind::Rem
    ) {
        return Err("arithmetic operators other than + and - are not allowed".into());
    }
    check_expr(&b.left)?;
    check_expr(&b.right)
}

fn check_filter(f: &Filter<'_>) -> Result<(), String> {
    if !FILTERS.contains(&f.name) {
        return Err(format!("filter {:?} is not allowed", f.name));
    }
    if f.name == "trim" && !f.args.is_empty() {
        return Err("trim takes no arguments here".into());
    }
    if let Some(e) = &f.expr {
        check_expr(e)?;
    }
    check_args(&f.args)
}

fn check_test(t: &Test<'_>) -> Result<(), String> {
    if !TESTS.contains(&t.name) {
        return Err(format!("test {:?} is not allowed", t.name));
    }
    check_expr(&t.expr)?;
    check_args(&t.args)
}

fn check_args(args: &[CallArg<'_>]) -> Result<(), String> {
    args.iter().try_for_each(|a| match a {
        CallArg::Pos(e) | CallArg::Kwarg(_, e) => check_expr(e),
        CallArg::PosSplat(_) | CallArg::KwargSplat(_) => {
            Err("argument splats are not allowed".into())
        }
    })
}

/// Renders one checked template into a capped buffer.
fn render_one(
    env: &Environment<'_>,
    source: &str,
    vars: &BTreeMap<&'static str, &str>,
) -> Result<String, String> {
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("{}", e.kind()))?;
    let mut out = CappedBuffer::default();
    template
        .render_captured_to(vars, &mut out)
        .map_err(|e| match e.kind() {
            ErrorKind::WriteFailure => {
                format!("renders to more than {} KiB", MAX_RENDERED_VALUE / 1024)
            }
            ErrorKind::OutOfFuel => "template does too much work (loops)".into(),
            // The kind names the problem (undefined variable, bad operation) without values.
            kind => format!("{kind}"),
        })?;
    String::from_utf8(out.0).map_err(|_| "renders to invalid UTF-8".into())
}

/// A `Write` that fails instead of growing past `MAX_RENDERED_VALUE`.
#[derive(Default)]
struct CappedBuffer(Vec<u8>);

impl io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len().saturating_add(buf.len()) > MAX_RENDERED_VALUE {
            return Err(io::Error::other("template output cap reached"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::runtime::fixtures::{CONTEXT as CTX, credential};

    fn cred() -> Credential {
        Credential {
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            ..credential()
        }
    }

    fn one(source: &str) -> Result<String, Error> {
        let t = [("k".to_string(), source.to_string())].into();
        render(&t, SecretLayout::ClientCredentials, &cred(), &CTX)
            .map(|mut m| m.remove("k").unwrap())
    }

    #[test]
    fn ordinary_templates_render() {
        assert_eq!(
            one("CLIENT_ID={{ clientId }}\nCLIENT_SECRET={{ secret }}").unwrap(),
            "CLIENT_ID=cid\nCLIENT_SECRET=s3cr3t-value"
        );
        let json: serde_json::Value = serde_json::from_str(
            &one("{{ {'id': clientId, 'secret': secret} | tojson }}").unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "cid", "secret": "s3cr3t-value"})
        );
        assert_eq!(
            one("{% if userId is defined %}{{ userId | upper }}{% else %}none{% endif %}").unwrap(),
            "U1"
        );
        assert_eq!(
            one("{% for c in tenantId %}[{{ c }}]{% endfor %}").unwrap(),
            "[t][1]"
        );
        assert_eq!(one("{{ missing | default('x') }}").unwrap(), "x");
    }

    #[test]
    fn unbounded_constructs_are_refused_before_rendering() {
        for (source, why) in [
            ("{{ 'x' * 100000000 }}", "arithmetic"),
            ("{% set a = secret ~ secret %}{{ a }}", "only"),
            ("{% with a = secret %}{{ a }}{% endwith %}", "only"),
            ("{% macro m() %}x{% endmacro %}{{ m() }}", "syntax error"),
            ("{{ range(10) | join }}", "not allowed"),
            ("{{ secret | indent(1000000000) }}", "not allowed"),
            ("{{ secret | replace('', secret) }}", "not allowed"),
            ("{{ 2 ** 100000 }}", "arithmetic"),
            ("{{ secret | trim(secret) }}", "no arguments"),
            ("{% for x in secret recursive %}{% endfor %}", "recursive"),
        ] {
            let err = one(source).unwrap_err().to_string();
            assert!(err.contains(why), "{source}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn nested_loops_run_out_of_fuel_and_output_is_capped() {
        let nested = "{% for a in secret %}{% for b in secret %}{% for c in secret %}{% for d in secret %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
        let err = one(nested).unwrap_err().to_string();
        assert!(err.contains("too much work"), "{err}");
        // 12^3 iterations of a ~4 KiB literal: cut by the output cap, not by memory.
        let wide = format!(
            "{{% for a in secret %}}{{% for b in secret %}}{{% for c in secret %}}{}{{% endfor %}}{{% endfor %}}{{% endfor %}}",
            "x".repeat(3900)
        );
        let err = one(&wide).unwrap_err().to_string();
        assert!(err.contains("more than 64 KiB"), "{err}");
        assert!(
            one(&"x".repeat(MAX_TEMPLATE_SOURCE + 1))
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
    }

    #[test]
    fn errors_name_the_problem_never_a_value() {
        let err = one("{{ clientSecret }}").unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().contains("data[k]"), "{err}");
        assert!(!err.to_string().contains("s3cr3t-value"));
    }

    #[test]
    fn fuzz_template_rendering() {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "{{ ",
            " }}",
            "{% ",
            " %}",
            "for ",
            " in ",
            "if ",
            "else",
            "endif",
            "endfor",
            "set ",
            "with",
            "macro",
            "secret",
            "clientId",
            "token",
            "tokenId",
            "loop.index",
            "|",
            "tojson",
            "upper",
            "trim",
            "default(",
            "indent(",
            "join",
            "range(",
            ")",
            "(",
            "[",
            "]",
            "{",
            "}",
            "~",
            "+",
            "*",
            "**",
            "-",
            "'x'",
            "\"y\"",
            "9999999",
            ",",
            ":",
            "=",
            ".",
            " ",
            "\n",
            "is defined",
            "not ",
            "and ",
            "recursive",
        ]);
        let templates = prop_oneof![
            prop::collection::vec(piece, 0..40).prop_map(|p| p.concat()),
            any::<String>(),
        ];
        let cases = crate::fuzz::fuzz_for(
            "template-rendering",
            templates,
            crate::fuzz::BUDGET,
            |source| {
                let t = [("k".to_string(), source)].into();
                match render(&t, SecretLayout::ClientCredentials, &cred(), &CTX) {
                    Ok(out) => prop_assert!(out.values().all(|v| v.len() <= MAX_RENDERED_VALUE)),
                    Err(e) => prop_assert!(!e.to_string().contains("s3cr3t-value"), "{e}"),
                }
                Ok(())
            },
        );
        assert!(cases > 0);
    }
}
