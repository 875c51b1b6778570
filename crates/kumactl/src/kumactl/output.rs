//! How `kumactl` prints: aligned tables by default, or YAML/JSON.

use super::KumactlError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Yaml,
    Json,
}

/// Columns padded to their widest cell, three spaces apart, as Kuma prints.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn document(value: &Value, format: Format) -> Result<String, KumactlError> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|source| KumactlError::Json {
                context: "cannot print the answer".into(),
                source,
            }),
        _ => serde_yaml_ng::to_string(value).map_err(|source| KumactlError::Yaml {
            context: "cannot print the answer".into(),
            source,
        }),
    }
}

/// `service=redis version=1`, keys sorted.
pub fn tags(tags: Option<&Value>) -> String {
    let Some(Value::Object(map)) = tags else {
        return String::new();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(" ")
}

/// The tags of every inbound of a dataplane, one inbound after another.
pub fn dataplane_tags(networking: Option<&Value>) -> String {
    networking
        .and_then(|n| n.get("inbound"))
        .and_then(Value::as_array)
        .map(|inbounds| {
            inbounds
                .iter()
                .map(|i| tags(i.get("tags")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `3h2m`, `45s`, or `never`.
pub fn ago(seconds: Option<i64>) -> String {
    let Some(s) = seconds else {
        return "never".into();
    };
    let s = s.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let out = table(&["MESH", "NAME"], &[vec!["default".into(), "a".into()]]);
        assert_eq!(out, "MESH      NAME\ndefault   a\n");
    }

    #[test]
    fn durations_read_like_kuma() {
        assert_eq!(ago(Some(5)), "5s");
        assert_eq!(ago(Some(125)), "2m5s");
        assert_eq!(ago(Some(7300)), "2h1m");
        assert_eq!(ago(None), "never");
    }
}
