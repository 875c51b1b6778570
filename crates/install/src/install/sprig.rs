//! The Sprig functions the chart uses, with Helm's meaning, for the
//! Go-template engine (gtmpl). `include` lives in the engine, which owns the
//! templates it executes.
//!
//! A function gets its arguments in Go's order; a pipeline's value comes
//! last (`x | default y` is `default y x`).

use gtmpl::{Func, FuncError, Value};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::collections::HashMap;

/// Every function the chart may call, besides Go's builtins and `include`.
pub const FUNCTIONS: &[(&str, Func)] = &[
    ("b64enc", b64enc),
    ("default", default),
    ("dict", dict),
    ("genCA", gen_ca),
    ("genSignedCert", gen_signed_cert),
    ("list", list),
    ("nindent", nindent),
    ("quote", quote),
    ("toYaml", to_yaml),
];

fn fail(function: &str, message: impl std::fmt::Display) -> FuncError {
    FuncError::Generic(format!("{function}: {message}"))
}

fn arity(function: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(fail(
            function,
            format!("takes {n} arguments, was given {}", args.len()),
        ))
    }
}

/// Go's `fmt.Sprint` of a value, as Sprig's `strval` gives it: nothing
/// for a missing value.
fn text(value: &Value) -> String {
    match value {
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn string_arg(function: &str, value: &Value) -> Result<String, FuncError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(_) | Value::Number(_) => Ok(value.to_string()),
        other => Err(fail(
            function,
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

fn number_arg(function: &str, value: &Value) -> Result<i64, FuncError> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| fail(function, format!("expected a whole number, got {value}")))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::NoValue | Value::Nil => "nothing",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Object(_) | Value::Map(_) => "a map",
        Value::Array(_) => "a list",
        Value::Function(_) => "a function",
        Value::Number(_) => "a number",
    }
}

/// Sprig's notion of empty, which `default` replaces.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Object(m) | Value::Map(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Function(_) => false,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [fallback] => Ok(fallback.clone()),
        [fallback, given] => Ok(if is_empty(given) { fallback } else { given }.clone()),
        _ => Err(fail(
            "default",
            format!("takes 1 or 2 arguments, was given {}", args.len()),
        )),
    }
}

/// Each argument as a Go double-quoted string, separated by spaces;
/// missing ones are left out.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::NoValue | Value::Nil))
        .map(|v| go_quote(&text(v)))
        .collect();
    Ok(Value::from(quoted.join(" ")))
}

/// Go's `%q` for the text a chart quotes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    use base64::Engine;
    arity("b64enc", args, 1)?;
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(text(&args[0])),
    ))
}

/// A newline, then the text with every line indented by `n` spaces.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    arity("nindent", args, 2)?;
    let width = number_arg("nindent", &args[0])?;
    let pad = " ".repeat(usize::try_from(width).map_err(|_| fail("nindent", "negative width"))?);
    let body = text(&args[1]).replace('\n', &format!("\n{pad}"));
    Ok(Value::from(format!("\n{pad}{body}")))
}

fn dict(args: &[Value]) -> Result<Value, FuncError> {
    if !args.len().is_multiple_of(2) {
        return Err(fail(
            "dict",
            "takes key and value pairs, was given an odd number of arguments",
        ));
    }
    let map = args
        .chunks(2)
        .map(|pair| Ok((string_arg("dict", &pair[0])?, pair[1].clone())))
        .collect::<Result<HashMap<_, _>, FuncError>>()?;
    Ok(Value::Map(map))
}

fn list(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(args.to_vec()))
}

/// YAML with map keys sorted and no final newline, as Helm's `toYaml`.
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    arity("toYaml", args, 1)?;
    let json = to_json(&args[0])?;
    let yaml = serde_yaml_ng::to_string(&json).map_err(|e| fail("toYaml", e))?;
    Ok(Value::from(yaml.trim_end_matches('\n')))
}

fn to_json(value: &Value) -> Result<serde_json::Value, FuncError> {
    Ok(match value {
        Value::NoValue | Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::from(s.as_str()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| fail("toYaml", format!("{n} is not a finite number")))?
            }
        }
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Object(map) | Value::Map(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for key in keys {
                out.insert(key.clone(), to_json(&map[key])?);
            }
            serde_json::Value::Object(out)
        }
        Value::Function(_) => return Err(fail("toYaml", "a function has no YAML form")),
    })
}

/// What `genCA` and `genSignedCert` return: PEM texts under `.Cert` and
/// `.Key`, as Sprig names them.
fn certificate(cert_pem: String, key_pem: String) -> Value {
    Value::Map(HashMap::from([
        ("Cert".to_string(), Value::from(cert_pem)),
        ("Key".to_string(), Value::from(key_pem)),
    ]))
}

/// Validity from now (less five minutes, for clock skew) for `days` days.
fn validity(function: &str, params: &mut CertificateParams, days: &Value) -> Result<(), FuncError> {
    let days = number_arg(function, days)?;
    if !(1..=36_500).contains(&days) {
        return Err(fail(
            function,
            format!("{days} days of validity; expected 1 to 36500"),
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
    Ok(())
}

/// `genCA CN DAYS`: a fresh self-signed certificate authority.
fn gen_ca(args: &[Value]) -> Result<Value, FuncError> {
    arity("genCA", args, 2)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, string_arg("genCA", &args[0])?);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity("genCA", &mut params, &args[1])?;
    let key = KeyPair::generate().map_err(|e| fail("genCA", e))?;
    let cert = params.self_signed(&key).map_err(|e| fail("genCA", e))?;
    Ok(certificate(cert.pem(), key.serialize_pem()))
}

/// `genSignedCert CN IPS DNS-NAMES DAYS CA`: a serving certificate signed by
/// a CA from `genCA`.
fn gen_signed_cert(args: &[Value]) -> Result<Value, FuncError> {
    const F: &str = "genSignedCert";
    arity(F, args, 5)?;
    let names = |value: &Value, what: &str| -> Result<Vec<String>, FuncError> {
        match value {
            Value::NoValue | Value::Nil => Ok(Vec::new()),
            Value::Array(items) => items.iter().map(|v| string_arg(F, v)).collect(),
            other => Err(fail(
                F,
                format!("{what} must be a list, got {}", describe(other)),
            )),
        }
    };
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, string_arg(F, &args[0])?);
    for ip in names(&args[1], "the IP addresses")? {
        let ip = ip
            .parse()
            .map_err(|_| fail(F, format!("\"{ip}\" is not an IP address")))?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    for dns in names(&args[2], "the DNS names")? {
        let name = dns
            .clone()
            .try_into()
            .map_err(|_| fail(F, format!("\"{dns}\" is not a DNS name")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(F, &mut params, &args[3])?;
    let ca = match &args[4] {
        Value::Map(ca) | Value::Object(ca) => ca,
        other => {
            return Err(fail(
                F,
                format!("the CA must come from genCA, got {}", describe(other)),
            ));
        }
    };
    let field = |name: &str| {
        ca.get(name)
            .map(text)
            .ok_or_else(|| fail(F, format!("the CA has no .{name}")))
    };
    let ca_key = KeyPair::from_pem(&field("Key")?).map_err(|e| fail(F, e))?;
    let issuer = Issuer::from_ca_cert_pem(&field("Cert")?, ca_key).map_err(|e| fail(F, e))?;
    let key = KeyPair::generate().map_err(|e| fail(F, e))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| fail(F, e))?;
    Ok(certificate(cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    #[test]
    fn quote_and_default_follow_sprig() {
        assert_eq!(
            quote(&[
                s("a\"b"),
                Value::from(15),
                Value::Bool(true),
                Value::NoValue
            ])
            .unwrap(),
            s(r#""a\"b" "15" "true""#)
        );
        assert_eq!(default(&[s("x"), s("")]).unwrap(), s("x"));
        assert_eq!(default(&[s("x"), Value::NoValue]).unwrap(), s("x"));
        assert_eq!(default(&[s("x"), s("y")]).unwrap(), s("y"));
        assert_eq!(default(&[s("x"), Value::Bool(false)]).unwrap(), s("x"));
    }

    #[test]
    fn nindent_indents_every_line() {
        assert_eq!(
            nindent(&[Value::from(4), s("a: 1\nb: 2")]).unwrap(),
            s("\n    a: 1\n    b: 2")
        );
        let e = nindent(&[s("four"), s("a")]).unwrap_err().to_string();
        assert!(e.contains("nindent") && e.contains("whole number"), "{e}");
    }

    #[test]
    fn to_yaml_sorts_keys() {
        let map = dict(&[
            s("requests"),
            dict(&[s("memory"), s("64Mi"), s("cpu"), s("50m")]).unwrap(),
            s("limits"),
            dict(&[s("memory"), s("1Gi")]).unwrap(),
        ])
        .unwrap();
        assert_eq!(
            to_yaml(&[map]).unwrap(),
            s("limits:\n  memory: 1Gi\nrequests:\n  cpu: 50m\n  memory: 64Mi")
        );
    }

    #[test]
    fn signed_certificate_chains_to_its_ca() {
        let ca = gen_ca(&[s("test-ca"), Value::from(30)]).unwrap();
        let cert = gen_signed_cert(&[
            s("svc.ns.svc"),
            Value::Nil,
            list(&[s("svc.ns.svc"), s("svc")]).unwrap(),
            Value::from(30),
            ca.clone(),
        ])
        .unwrap();
        let field = |v: &Value, k: &str| match v {
            Value::Map(m) => text(&m[k]),
            _ => panic!("not a map"),
        };
        let der = |pem: &str| {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
        };
        let (leaf_der, root_der) = (der(&field(&cert, "Cert")), der(&field(&ca, "Cert")));
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        leaf.verify_signature(Some(root.public_key())).unwrap();
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 2);
        assert!(field(&cert, "Key").contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_certificate_arguments_are_refused() {
        let e = gen_ca(&[s("ca"), Value::from(0)]).unwrap_err().to_string();
        assert!(e.contains("genCA") && e.contains("1 to 36500"), "{e}");
        let e = gen_signed_cert(&[s("x"), Value::Nil, Value::Nil, Value::from(1), s("ca")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must come from genCA"), "{e}");
    }
}
