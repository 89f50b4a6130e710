//! Building `SET`/`ADD` update expressions from attribute names and values, with
//! placeholders for both so no attribute name ever collides with a reserved word.

use super::Item;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Updates {
    set: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
}

impl Updates {
    pub fn new() -> Self {
        Self::default()
    }

    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub fn set(mut self, attr: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attr), self.value(value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    pub fn set_opt(self, attr: &str, value: Option<AttributeValue>) -> Self {
        match value {
            Some(v) => self.set(attr, v),
            None => self,
        }
    }

    /// Adds `delta` to a number attribute (`SET a = a + d`, so a missing attribute fails
    /// loudly instead of starting from zero).
    pub fn increment(mut self, attr: &str, delta: i64) -> Self {
        let (name, value) = (self.name(attr), self.value(super::n(delta)));
        self.set.push(format!("{name} = {name} + {value}"));
        self
    }

    pub fn remove(mut self, attr: &str) -> Self {
        let name = self.name(attr);
        self.remove.push(name);
        self
    }

    /// A condition that refers to attributes and values through the same placeholders.
    pub fn condition(
        &mut self,
        template: &str,
        attrs: &[&str],
        values: Vec<AttributeValue>,
    ) -> String {
        let mut out = template.to_owned();
        for (i, attr) in attrs.iter().enumerate() {
            let placeholder = self.name(attr);
            out = out.replace(&format!("{{a{i}}}"), &placeholder);
        }
        for (i, value) in values.into_iter().enumerate() {
            let placeholder = self.value(value);
            out = out.replace(&format!("{{v{i}}}"), &placeholder);
        }
        out
    }

    pub fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }

    /// The update of item `id` of `table`, under `condition`, as a transaction item.
    pub fn transact(
        &self,
        table: &str,
        id: u64,
        condition: String,
    ) -> Result<TransactWriteItem, super::StoreError> {
        let update = Update::builder()
            .table_name(table)
            .key("id", super::n(id))
            .update_expression(self.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(self.names())
            .set_expression_attribute_values(self.values())
            .build()
            .map_err(|e| super::StoreError::Failed(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub fn values(&self) -> Option<Item> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{n, s};

    #[test]
    fn placeholders_are_unique_and_conditions_share_them() {
        let mut u = Updates::new()
            .set("name", s("a"))
            .increment("count", 1)
            .remove("old");
        let cond = u.condition(
            "attribute_exists({a0}) AND {a1} = {v0}",
            &["id", "group_id"],
            vec![n(3)],
        );
        assert_eq!(u.expression(), "SET #a0 = :v0, #a1 = #a1 + :v1 REMOVE #a2");
        assert_eq!(cond, "attribute_exists(#a3) AND #a4 = :v2");
        assert_eq!(u.names().unwrap()["#a4"], "group_id");
        assert_eq!(u.values().unwrap()[":v2"], n(3));
    }
}
