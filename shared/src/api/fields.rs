//! A request body's fields, taken one by one into typed values. Keys are matched with `_`
//! and `-` treated alike (dcmanager itself mixes `group_id` and `management-state`); a key
//! left over when the route has taken what it knows is "Unexpected parameter received".

use super::ApiError;
use crate::domain::{Invalid, Ref};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Fields {
    /// (key as the caller wrote it, canonical key, value)
    entries: Vec<(String, String, Value)>,
}

fn canonical(key: &str) -> String {
    key.replace('_', "-")
}

impl Fields {
    pub fn from_json(body: &[u8]) -> Result<Fields, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "Request body is empty; send a JSON object".to_owned(),
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("Request body is not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Fields::from_map(map),
            _ => Err(ApiError::BadRequest(
                "Request body must be a JSON object".to_owned(),
            )),
        }
    }

    pub fn from_map(map: Map<String, Value>) -> Result<Fields, ApiError> {
        let mut entries: Vec<(String, String, Value)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let canon = canonical(&key);
            if let Some((first, _, _)) = entries.iter().find(|(_, c, _)| *c == canon) {
                return Err(ApiError::BadRequest(format!(
                    "'{first}' and '{key}' name the same parameter; give it once"
                )));
            }
            entries.push((key, canon, value));
        }
        Ok(Fields { entries })
    }

    fn take(&mut self, key: &str) -> Option<(String, Value)> {
        let canon = canonical(key);
        let at = self.entries.iter().position(|(_, c, _)| *c == canon)?;
        let (given, _, value) = self.entries.remove(at);
        Some((given, value))
    }

    /// A string field.
    pub fn string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((given, _)) => Err(Invalid::field(&given, "must be a string").into()),
        }
    }

    /// Free text of at most `max` characters.
    pub fn text(&mut self, key: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.string(key)? {
            Some(s) if s.chars().count() > max => Err(ApiError::BadRequest(format!(
                "Invalid value for '{key}': must be at most {max} characters"
            ))),
            other => Ok(other),
        }
    }

    /// A string field parsed by a domain constructor.
    pub fn parsed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str, &str) -> Result<T, Invalid>,
    ) -> Result<Option<T>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some((given, Value::String(s))) => Ok(Some(parse(&given, &s)?)),
            Some((given, _)) => Err(Invalid::field(&given, "must be a string").into()),
        }
    }

    pub fn required<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str, &str) -> Result<T, Invalid>,
    ) -> Result<T, ApiError> {
        self.parsed(key, parse)?
            .ok_or_else(|| ApiError::BadRequest(format!("'{key}' is required")))
    }

    /// An integer, given as a JSON number or a string of digits.
    pub fn integer(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, Value::Number(n))) if n.is_i64() => Ok(n.as_i64()),
            Some((_, Value::String(s))) if s.parse::<i64>().is_ok() => Ok(s.parse().ok()),
            Some((given, _)) => Err(Invalid::field(&given, "must be an integer").into()),
        }
    }

    /// A boolean: a JSON boolean or the strings "true"/"false" in any case (multipart
    /// sends strings).
    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, Value::Bool(b))) => Ok(Some(b)),
            Some((_, Value::String(s))) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some((_, Value::String(s))) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some((given, _)) => Err(ApiError::BadRequest(format!(
                "Invalid {given} value, should be boolean"
            ))),
        }
    }

    /// A mapping: a JSON object, or a string holding a YAML mapping (a file's contents).
    pub fn mapping(&mut self, key: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        let value = match self.take(key) {
            None => return Ok(None),
            Some((given, Value::String(text))) => {
                super::multipart::yaml_mapping(&given, text.as_bytes())?
            }
            Some((_, value)) => value,
        };
        match value {
            Value::Object(map) => Ok(Some(map)),
            other => Err(expected_dict(key, &other)),
        }
    }

    /// A subcloud or group reference: an id (number or digits) or a name.
    pub fn reference(&mut self, key: &str) -> Result<Option<Ref>, ApiError> {
        self.reference_or(key, |invalid, _| invalid.into())
    }

    /// The subcloud or group a request is about: like `reference`, but a name that cannot
    /// exist is simply not found (404 with `not_found`), as an unknown one is.
    pub fn target(&mut self, key: &str, not_found: &str) -> Result<Option<Ref>, ApiError> {
        self.reference_or(key, |_, _| ApiError::NotFound(not_found.to_owned()))
    }

    fn reference_or(
        &mut self,
        key: &str,
        bad_name: impl FnOnce(Invalid, &str) -> ApiError,
    ) -> Result<Option<Ref>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some((given, Value::Number(n))) => match n.as_u64() {
                Some(id) => Ok(Some(Ref::Id(id))),
                None => Err(Invalid::field(&given, "an id must be a positive integer").into()),
            },
            Some((given, Value::String(s))) => match Ref::parse(&given, &s) {
                Ok(r) => Ok(Some(r)),
                Err(invalid) => Err(bad_name(invalid, &s)),
            },
            Some((given, _)) => Err(Invalid::field(&given, "must be a name or an id").into()),
        }
    }

    /// Ends parsing: anything not taken is a parameter the route does not know.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self.entries.iter().map(|(k, _, _)| k.as_str()).collect();
        Err(ApiError::BadRequest(format!(
            "Unexpected parameter received: {}",
            keys.join(", ")
        )))
    }
}

/// dcmanager's 400 for a values file that is not a mapping, naming the type as Python
/// would ("Invalid type for backup_values: Expected dict, got list").
pub(super) fn expected_dict(field: &str, value: &Value) -> ApiError {
    let got = match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    ApiError::BadRequest(format!(
        "Invalid type for {field}: Expected dict, got {got}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        Fields::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn underscores_and_hyphens_match() {
        let mut f = fields(r#"{"management_state": "managed", "group-id": 3}"#);
        assert_eq!(
            f.string("management-state").unwrap().as_deref(),
            Some("managed")
        );
        assert_eq!(f.reference("group_id").unwrap(), Some(Ref::Id(3)));
        f.finish().unwrap();
    }

    #[test]
    fn the_same_key_twice_is_refused() {
        let err = Fields::from_json(br#"{"group_id": 1, "group-id": 2}"#).unwrap_err();
        assert!(err.to_string().contains("give it once"), "{err}");
    }

    #[test]
    fn leftovers_are_unexpected_parameters() {
        let mut f = fields(r#"{"name": "a", "bogus": 1}"#);
        f.string("name").unwrap();
        let err = f.finish().unwrap_err();
        assert_eq!(err.to_string(), "Unexpected parameter received: bogus");
    }

    #[test]
    fn types_are_named_in_errors() {
        let mut f = fields(r#"{"description": 5, "max_parallel_subclouds": "x"}"#);
        assert_eq!(
            f.string("description").unwrap_err().to_string(),
            "Invalid value for 'description': must be a string"
        );
        assert!(f
            .integer("max_parallel_subclouds")
            .unwrap_err()
            .to_string()
            .contains("integer"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        for body in ["", "[1]", "{", "\"x\""] {
            assert!(Fields::from_json(body.as_bytes()).is_err(), "{body:?}");
        }
    }
}
