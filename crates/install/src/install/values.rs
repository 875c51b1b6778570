//! The chart's values as Helm computes them: the user's values (each
//! `--values` file, then each `--set`, later ones winning, maps merged key
//! by key) laid over the chart's `values.yaml`, where a user's `null`
//! removes a default, as `helm template` does.

use super::InstallError;
use serde_json::{Map, Value};

/// Parses a values document (YAML); an empty file is no values at all.
pub fn parse(origin: &str, text: &str) -> Result<Value, InstallError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| InstallError::Values {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        other => Err(InstallError::Values {
            origin: origin.to_string(),
            message: format!(
                "expected a map of values at the top, found {}",
                kind(&other)
            ),
        }),
    }
}

/// Lays the user's `over` onto the user's `base` (Helm's `mergeMaps`):
/// maps merge recursively, anything else replaces; a `null` is kept, for
/// [`coalesce`] to act on.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// The user's values over the chart's defaults (Helm's `coalesce`): a
/// default fills what the user left out, maps coalesce recursively, and a
/// user's `null` removes the default. A `null` for a key the chart does not
/// have stays, as it does under Helm.
pub fn coalesce(mut user: Value, defaults: &Value) -> Value {
    if let (Value::Object(user_map), Value::Object(default_map)) = (&mut user, defaults) {
        for (key, default) in default_map {
            match user_map.get_mut(key) {
                Some(Value::Null) => {
                    user_map.remove(key);
                }
                Some(given) if given.is_object() && default.is_object() => {
                    *given = coalesce(std::mem::take(given), default);
                }
                Some(_) => {}
                None => {
                    user_map.insert(key.clone(), default.clone());
                }
            }
        }
    }
    user
}

/// Applies one `--set` argument (`a.b=1,c[0]=x`, Helm's syntax: `\` escapes
/// `,`, `.`, `=` and `[`) to `values`. Values are typed as Helm types them:
/// `true`/`false`, `null`, integers without a leading zero, otherwise a
/// string.
pub fn set(values: &mut Value, argument: &str) -> Result<(), InstallError> {
    let err = |message: String| InstallError::Set {
        argument: argument.to_string(),
        message,
    };
    // On a clone, so that a bad assignment late in the list changes nothing.
    let mut next = values.clone();
    for assignment in split_unescaped(argument, ',') {
        let Some((path, raw)) = split_once_unescaped(&assignment, '=') else {
            return Err(err(format!(
                "\"{}\" has no \"=\"; expected KEY=VALUE",
                unescape(&assignment)
            )));
        };
        let keys = parse_path(&path).map_err(&err)?;
        assign(&mut next, &keys, typed(&unescape(&raw))).map_err(&err)?;
    }
    *values = next;
    Ok(())
}

/// One step of a `--set` path: a map key or a list index.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in split_unescaped(path, '.') {
        let (name, mut indexes) = match part.find('[') {
            Some(at) if !part[..at].ends_with('\\') => (&part[..at], &part[at..]),
            _ => (part.as_str(), ""),
        };
        let name = unescape(name);
        if name.is_empty() {
            return Err(format!("\"{path}\" has an empty key"));
        }
        steps.push(Step::Key(name));
        while !indexes.is_empty() {
            let close = indexes
                .find(']')
                .ok_or_else(|| format!("\"{part}\" has a \"[\" without \"]\""))?;
            let index = indexes[1..close].parse::<usize>().map_err(|_| {
                format!(
                    "\"{}\" is not a list index; expected a number in [ ]",
                    &indexes[1..close]
                )
            })?;
            // Helm refuses huge indexes too: the list would be padded to them.
            if index > 10_000 {
                return Err(format!("list index {index} is too large (at most 10000)"));
            }
            steps.push(Step::Index(index));
            indexes = &indexes[close + 1..];
            if !indexes.is_empty() && !indexes.starts_with('[') {
                return Err(format!("\"{part}\" has text after \"]\""));
            }
        }
    }
    if steps.is_empty() {
        return Err("the key is empty".to_string());
    }
    Ok(steps)
}

fn assign(target: &mut Value, steps: &[Step], value: Value) -> Result<(), String> {
    let Some((step, rest)) = steps.split_first() else {
        *target = value;
        return Ok(());
    };
    match step {
        Step::Key(key) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().expect("made a map above");
            assign(map.entry(key.clone()).or_insert(Value::Null), rest, value)
        }
        Step::Index(index) => {
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            let list = target.as_array_mut().expect("made a list above");
            if list.len() <= *index {
                list.resize(index + 1, Value::Null);
            }
            assign(&mut list[*index], rest, value)
        }
    }
}

fn typed(raw: &str) -> Value {
    match raw {
        _ if raw.eq_ignore_ascii_case("true") => Value::Bool(true),
        _ if raw.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ if raw.eq_ignore_ascii_case("null") => Value::Null,
        "0" => Value::from(0),
        _ if !raw.starts_with('0') => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw)),
        _ => Value::from(raw),
    }
}

/// Splits on `separator` where no `\` stands before it, keeping escapes.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        let part = parts.last_mut().expect("never empty");
        if escaped {
            part.push('\\');
            part.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(String::new());
        } else {
            part.push(c);
        }
    }
    if escaped {
        parts.last_mut().expect("never empty").push('\\');
    }
    parts
}

fn split_once_unescaped(text: &str, separator: char) -> Option<(String, String)> {
    let parts = split_unescaped(text, separator);
    let (first, rest) = parts.split_first()?;
    (!rest.is_empty()).then(|| (first.clone(), rest.join(&separator.to_string())))
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_sets(sets: &[&str]) -> Value {
        let mut values = json!({"injector": {"separate": false, "failurePolicy": "Ignore"}});
        for s in sets {
            set(&mut values, s).unwrap();
        }
        values
    }

    #[test]
    fn set_types_values_as_helm_does() {
        let values = with_sets(&[
            "injector.separate=true,controlPlane.replicas=3",
            "a.zero=0,a.octal=010,a.text=Fail,a.gone=x",
            "a.gone=null",
        ]);
        assert_eq!(
            values,
            json!({
                "injector": {"separate": true, "failurePolicy": "Ignore"},
                "controlPlane": {"replicas": 3},
                "a": {"zero": 0, "octal": "010", "text": "Fail", "gone": null},
            })
        );
    }

    #[test]
    fn set_understands_escapes_and_list_indexes() {
        let values = with_sets(&[
            r"labels.kuma\.io/zone=east\,west",
            "args[1]=run,env[0].name=A",
        ]);
        assert_eq!(values["labels"]["kuma.io/zone"], json!("east,west"));
        assert_eq!(values["args"], json!([null, "run"]));
        assert_eq!(values["env"], json!([{"name": "A"}]));
    }

    #[test]
    fn bad_set_arguments_name_what_is_wrong() {
        for (argument, expected) in [
            ("injector.separate", "has no \"=\""),
            ("a..b=1", "empty key"),
            ("a[x]=1", "not a list index"),
            ("a[1=1", "without \"]\""),
            ("a[99999999]=1", "too large"),
            ("a=1,b", "\"b\" has no \"=\""),
        ] {
            let mut values = json!({});
            let e = set(&mut values, argument).unwrap_err().to_string();
            assert!(
                e.contains(argument) && e.contains(expected),
                "{argument}: {e}"
            );
            assert_eq!(values, json!({}), "{argument} changed nothing");
        }
    }

    #[test]
    fn merge_replaces_scalars_merges_maps_and_keeps_nulls() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": "x"});
        merge(&mut base, json!({"a": {"c": 3}, "d": [9], "e": null}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "d": [9], "e": null}));
    }

    #[test]
    fn a_users_null_removes_a_default_and_stays_elsewhere() {
        let defaults = json!({"limits": {"memory": "1Gi"}, "replicas": 1, "tag": ""});
        let user = json!({"limits": {"memory": null, "cpu": null}, "tag": "2.0"});
        assert_eq!(
            coalesce(user, &defaults),
            json!({"limits": {"cpu": null}, "tag": "2.0", "replicas": 1})
        );
    }

    #[test]
    fn a_values_file_must_be_a_map() {
        assert_eq!(parse("empty.yaml", "").unwrap(), json!({}));
        let e = parse("list.yaml", "- a\n").unwrap_err().to_string();
        assert!(e.contains("list.yaml") && e.contains("found a list"), "{e}");
        let e = parse("bad.yaml", "a: [\n").unwrap_err().to_string();
        assert!(e.contains("bad.yaml"), "{e}");
    }
}
