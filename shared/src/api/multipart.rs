//! `multipart/form-data` bodies, as stock dcmanager clients send them: string fields, and
//! the YAML files `backup_values` / `restore_values` as file parts. The body is already
//! whole in memory (API Gateway hands it over base64-decoded), so this is a plain parser.

use super::ApiError;
use serde_json::{Map, Value};
use yaml_rust2::Event;

/// The boundary of a `multipart/form-data` content type, if that is what it is.
pub fn boundary(content_type: &str) -> Option<Result<String, ApiError>> {
    let (media, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !media.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = param(params, "boundary").filter(|b| !b.is_empty() && b.len() <= 200);
    Some(boundary.ok_or_else(|| {
        ApiError::BadRequest("multipart/form-data body without a boundary parameter".to_owned())
    }))
}

/// A parameter of a header value (`; name=value` or `; name="quoted; value"`).
fn param(params: &str, wanted: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', ';', '\t']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(';').unwrap_or((after, "")),
        };
        if key.trim().eq_ignore_ascii_case(wanted) {
            return Some(value.trim().to_owned());
        }
        rest = next;
    }
}

fn malformed(why: &str) -> ApiError {
    ApiError::BadRequest(format!("Malformed multipart/form-data body: {why}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of the body, by field name, as text (a value file's YAML is parsed by the
/// field that takes it).
pub fn parse(body: &[u8], boundary: &str) -> Result<Map<String, Value>, ApiError> {
    let delimiter = format!("--{boundary}");
    let start = find(body, delimiter.as_bytes()).ok_or_else(|| malformed("no boundary line"))?;
    let mut rest = &body[start + delimiter.len()..];
    let separator = format!("\r\n--{boundary}");
    let mut fields = Map::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("a boundary line must end with CRLF"))?;
        let end = find(rest, separator.as_bytes())
            .ok_or_else(|| malformed("a part is not terminated by the boundary"))?;
        let (part, tail) = rest.split_at(end);
        rest = &tail[separator.len()..];
        let header_end =
            find(part, b"\r\n\r\n").ok_or_else(|| malformed("a part has no header section"))?;
        let headers = std::str::from_utf8(&part[..header_end])
            .map_err(|_| malformed("part headers are not UTF-8"))?;
        let name = part_name(headers)?;
        let text = String::from_utf8(part[header_end + 4..].to_vec())
            .map_err(|_| ApiError::BadRequest(format!("Field '{name}' is not UTF-8 text")))?;
        if fields.insert(name.clone(), Value::String(text)).is_some() {
            return Err(ApiError::BadRequest(format!(
                "Field '{name}' is given twice; give it once"
            )));
        }
    }
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."` header.
fn part_name(headers: &str) -> Result<String, ApiError> {
    let disposition = headers
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
        .map(|(_, v)| v)
        .ok_or_else(|| malformed("a part has no Content-Disposition header"))?;
    let params = disposition.split_once(';').map(|(_, p)| p).unwrap_or("");
    param(params, "name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed("a part's Content-Disposition has no name"))
}

/// A YAML document that must be a mapping (an empty file is an empty mapping).
pub fn yaml_mapping(field: &str, text: &[u8]) -> Result<Value, ApiError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    refuse_tags(field, text)?;
    let value: Value = serde_yaml::from_slice(text)
        .map_err(|e| ApiError::BadRequest(format!("{field} is not valid YAML: {e}")))?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(super::fields::expected_dict(field, &other)),
    }
}

/// Tags a safe loader resolves to plain data (YAML's core schema). Any other tag names a
/// constructor (`!!python/object/apply:os.system`) that dcmanager's `yaml.safe_load` refuses,
/// and that serde_yaml would drop silently, keeping the tagged value.
const PLAIN_TAGS: [&str; 7] = ["str", "int", "float", "bool", "null", "map", "seq"];
const CORE_SCHEMA: &str = "tag:yaml.org,2002:";

fn refuse_tags(field: &str, text: &[u8]) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::BadRequest(format!("{field} is not valid YAML: {why}"));
    let text = std::str::from_utf8(text).map_err(|_| invalid("it is not UTF-8".into()))?;
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| invalid(e.to_string()))?;
        let tag = match &event {
            Event::Scalar(_, _, _, tag)
            | Event::SequenceStart(_, tag)
            | Event::MappingStart(_, tag) => tag.as_ref(),
            Event::StreamEnd => return Ok(()),
            _ => None,
        };
        let Some(tag) = tag else { continue };
        if tag.handle == CORE_SCHEMA && PLAIN_TAGS.contains(&tag.suffix.as_str()) {
            continue;
        }
        let handle = if tag.handle == CORE_SCHEMA {
            "!!"
        } else {
            tag.handle.as_str()
        };
        return Err(ApiError::BadRequest(format!(
            "{field} uses the YAML tag {handle}{} (line {}); tags that construct objects are not accepted",
            tag.suffix,
            mark.line()
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
        let mut out = String::new();
        for (name, file, content) in parts {
            out.push_str("--XyZ\r\n");
            match file {
                Some(f) => out.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )),
                None => out.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                )),
            }
            out.push_str(content);
            out.push_str("\r\n");
        }
        out.push_str("--XyZ--\r\n");
        out.into_bytes()
    }

    #[test]
    fn yaml_tags_that_construct_objects_are_refused() {
        for (text, tag) in [
            (
                "a: !!python/object/apply:os.system ['ls']",
                "!!python/object/apply:os.system",
            ),
            (
                "a:\n  b: !!python/name:os.system",
                "!!python/name:os.system",
            ),
            ("- !custom x", "!custom"),
            ("a: !<tag:example.com,2000:x> 1", "tag:example.com,2000:x"),
            ("a: !!binary aGk=", "!!binary"),
        ] {
            let error = yaml_mapping("backup_values", text.as_bytes()).expect_err(text);
            assert!(error.to_string().contains(tag), "{text}: {error}");
        }
        let plain = "a: !!str 5\nb: !!int '7'\nc: !!map {d: !!seq [1]}\ne: !!bool true";
        let value = yaml_mapping("backup_values", plain.as_bytes()).expect("core tags");
        assert_eq!(value["a"], "5");
        assert_eq!(value["b"], 7);
    }

    #[test]
    fn fields_and_files_as_text() {
        let b = body(&[
            ("subcloud", None, "subcloud1"),
            ("local_only", None, "true"),
            (
                "backup_values",
                Some("v; 1.yaml"),
                "backup_dir: /opt/backups\nkeep: 3\n",
            ),
        ]);
        let fields = parse(&b, "XyZ").unwrap();
        assert_eq!(fields["subcloud"], "subcloud1");
        assert_eq!(fields["local_only"], "true");
        assert_eq!(
            fields["backup_values"],
            "backup_dir: /opt/backups\nkeep: 3\n"
        );
        let values = yaml_mapping("backup_values", b"keep: 3").unwrap();
        assert_eq!(values["keep"], 3);
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"ab;c\"")
                .unwrap()
                .unwrap(),
            "ab;c"
        );
        assert_eq!(
            boundary("multipart/form-data;boundary=x1")
                .unwrap()
                .unwrap(),
            "x1"
        );
        assert!(boundary("multipart/form-data").unwrap().is_err());
        assert!(boundary("application/json").is_none());
    }

    #[test]
    fn malformed_bodies_are_400() {
        let cases: [&[u8]; 5] = [
            b"no boundary here",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--",
            b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--",
        ];
        for case in cases {
            assert!(matches!(parse(case, "XyZ"), Err(ApiError::BadRequest(_))));
        }
        let binary = [
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".as_ref(),
            &[0xff, 0xfe],
            b"\r\n--XyZ--",
        ]
        .concat();
        assert!(parse(&binary, "XyZ").is_err());
        assert!(yaml_mapping("restore_values", b"a: [unclosed")
            .unwrap_err()
            .to_string()
            .starts_with("restore_values is not valid YAML"));
        assert_eq!(
            yaml_mapping("restore_values", b"- 1\n- 2")
                .unwrap_err()
                .to_string(),
            "Invalid type for restore_values: Expected dict, got list"
        );
        assert_eq!(
            yaml_mapping("backup_values", b"just text")
                .unwrap_err()
                .to_string(),
            "Invalid type for backup_values: Expected dict, got str"
        );
        let twice = body(&[("a", None, "1"), ("a", None, "2")]);
        assert!(parse(&twice, "XyZ").is_err());
    }
}
