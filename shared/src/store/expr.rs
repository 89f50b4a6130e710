//! The one way the store writes DynamoDB expressions: update actions (`SET`, `REMOVE`, `ADD`,
//! `DELETE`), a condition (or a query's key condition) and the placeholders both share. Every
//! attribute name goes through a `#` placeholder (so none collides with a reserved word) and
//! every value through a `:` placeholder; names come from `store/attributes.rs`.

use super::{Item, StoreError};
use aws_sdk_dynamodb::operation::{
    delete_item::builders::DeleteItemFluentBuilder, put_item::builders::PutItemFluentBuilder,
    query::builders::QueryFluentBuilder, update_item::builders::UpdateItemFluentBuilder,
};
use aws_sdk_dynamodb::types::builders::{DeleteBuilder, PutBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use std::collections::HashMap;

/// An expression being built: add actions and conditions, then hand it to a request (which
/// copies it: one expression may serve several).
#[derive(Debug, Clone, Default)]
pub struct Expr {
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
    delete: Vec<String>,
    conditions: Vec<String>,
    /// Placeholder → attribute name, and back (one placeholder per name).
    names: HashMap<String, String>,
    placeholders: HashMap<String, String>,
    values: Item,
}

/// An expression's parts as a request takes them.
struct Parts {
    update: Option<String>,
    condition: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<Item>,
}

/// Hands an expression to one kind of request builder: its update expression (if the request
/// has one), its condition (or key condition), names and values.
macro_rules! into_request {
    ($(#[$doc:meta])* $fn:ident($builder:ty) { $($setter:ident: $part:ident),* }) => {
        $(#[$doc])*
        pub fn $fn(&self, builder: $builder) -> $builder {
            let parts = self.parts();
            builder
                $(.$setter(parts.$part))*
                .set_expression_attribute_names(parts.names)
                .set_expression_attribute_values(parts.values)
        }
    };
}

impl Expr {
    /// An empty expression.
    pub fn new() -> Self {
        Self::default()
    }

    /// The placeholder of an attribute; a dotted path (`last_run.due_at`) becomes a path of
    /// placeholders.
    pub fn name(&mut self, attr: &str) -> String {
        attr.split('.')
            .map(|part| {
                if let Some(placeholder) = self.placeholders.get(part) {
                    return placeholder.clone();
                }
                let placeholder = format!("#a{}", self.names.len());
                self.names.insert(placeholder.clone(), part.to_owned());
                self.placeholders
                    .insert(part.to_owned(), placeholder.clone());
                placeholder
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The placeholder of a value.
    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    // ---- update actions ----------------------------------------------------------------

    /// `SET attr = value`.
    pub fn set(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attr), self.value(value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    /// `SET attr = value` when there is a value.
    pub fn set_opt(&mut self, attr: &str, value: Option<AttributeValue>) -> &mut Self {
        if let Some(value) = value {
            self.set(attr, value);
        }
        self
    }

    /// `SET attr = <rhs>`, where `rhs` is written with this expression's placeholders (only
    /// through the named actions below, so no expression text is written elsewhere).
    fn set_to(&mut self, attr: &str, rhs: impl FnOnce(&mut Self) -> String) -> &mut Self {
        let name = self.name(attr);
        let rhs = rhs(self);
        self.set.push(format!("{name} = {rhs}"));
        self
    }

    /// `SET attr = if_not_exists(from, absent)`: a copy of `from` as the item was before this
    /// write (`absent` when it had none).
    pub fn copy_or(&mut self, attr: &str, from: &str, absent: AttributeValue) -> &mut Self {
        self.set_to(attr, |e| {
            let (from, absent) = (e.name(from), e.value(absent));
            format!("if_not_exists({from}, {absent})")
        })
    }

    /// Adds `delta` to a number attribute that must exist (`SET a = a + d`: a missing one
    /// fails loudly instead of starting from zero).
    pub fn increment(&mut self, attr: &str, delta: i64) -> &mut Self {
        self.set_to(attr, |e| {
            format!("{} + {}", e.name(attr), e.value(super::n(delta)))
        })
    }

    /// Adds `delta` to a counter, a missing one counting as `start`.
    pub fn count(&mut self, attr: &str, start: u64, delta: i64) -> &mut Self {
        self.set_to(attr, |e| {
            let name = e.name(attr);
            let (start, delta) = (e.value(super::n(start)), e.value(super::n(delta)));
            format!("if_not_exists({name}, {start}) + {delta}")
        })
    }

    /// `REMOVE attr`.
    pub fn remove(&mut self, attr: &str) -> &mut Self {
        let name = self.name(attr);
        self.remove.push(name);
        self
    }

    /// Appends the elements of the list `value` to the list `attr`, a missing one counting
    /// as empty.
    pub fn append(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        self.set_to(attr, |e| {
            let name = e.name(attr);
            let (empty, value) = (e.value(AttributeValue::L(vec![])), e.value(value));
            format!("list_append(if_not_exists({name}, {empty}), {value})")
        })
    }

    /// `ADD attr value`: to a number, or elements to a set.
    pub fn add(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attr), self.value(value));
        self.add.push(format!("{name} {value}"));
        self
    }

    /// `DELETE attr value`: elements from a set.
    pub fn delete(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attr), self.value(value));
        self.delete.push(format!("{name} {value}"));
        self
    }

    // ---- conditions (all must hold) ----------------------------------------------------

    /// A clause written with this expression's placeholders.
    pub fn when(&mut self, clause: impl FnOnce(&mut Self) -> String) -> &mut Self {
        let clause = clause(self);
        self.conditions.push(clause);
        self
    }

    /// The clause `attr <op> value`, for [`Expr::when`] or [`Expr::absent_or`].
    pub fn compared(&mut self, attr: &str, op: &str, value: AttributeValue) -> String {
        format!("{} {op} {}", self.name(attr), self.value(value))
    }

    fn compare(&mut self, attr: &str, op: &str, value: AttributeValue) -> &mut Self {
        self.when(|e| e.compared(attr, op, value))
    }

    /// `absent` does not exist, or `clause` holds.
    pub fn absent_or(
        &mut self,
        absent: &str,
        clause: impl FnOnce(&mut Self) -> String,
    ) -> &mut Self {
        self.when(|e| {
            let absent = e.name(absent);
            format!("(attribute_not_exists({absent}) OR {})", clause(e))
        })
    }

    /// `attr = value`.
    pub fn eq(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        self.compare(attr, "=", value)
    }

    /// `attr <= value`.
    pub fn le(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        self.compare(attr, "<=", value)
    }

    /// `attr > value`.
    pub fn gt(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        self.compare(attr, ">", value)
    }

    /// The item (or the attribute) exists.
    pub fn exists(&mut self, attr: &str) -> &mut Self {
        self.when(|e| format!("attribute_exists({})", e.name(attr)))
    }

    /// The item (or the attribute) does not exist.
    pub fn not_exists(&mut self, attr: &str) -> &mut Self {
        self.when(|e| format!("attribute_not_exists({})", e.name(attr)))
    }

    /// `attr = value`, or the attribute absent when `value` is `None`.
    pub fn eq_or_absent(&mut self, attr: &str, value: Option<AttributeValue>) -> &mut Self {
        match value {
            Some(value) => self.eq(attr, value),
            None => self.not_exists(attr),
        }
    }

    // ---- into requests -----------------------------------------------------------------

    fn parts(&self) -> Parts {
        let mut update = Vec::new();
        for (keyword, actions) in [
            ("SET", &self.set),
            ("REMOVE", &self.remove),
            ("ADD", &self.add),
            ("DELETE", &self.delete),
        ] {
            if !actions.is_empty() {
                update.push(format!("{keyword} {}", actions.join(", ")));
            }
        }
        Parts {
            update: (!update.is_empty()).then(|| update.join(" ")),
            condition: (!self.conditions.is_empty()).then(|| self.conditions.join(" AND ")),
            names: (!self.names.is_empty()).then(|| self.names.clone()),
            values: (!self.values.is_empty()).then(|| self.values.clone()),
        }
    }

    into_request!(
        /// An UpdateItem request with this update, condition, names and values.
        update_item(UpdateItemFluentBuilder) {
            set_update_expression: update, set_condition_expression: condition
        }
    );
    into_request!(
        /// A PutItem request under this condition.
        put_item(PutItemFluentBuilder) { set_condition_expression: condition }
    );
    into_request!(
        /// A DeleteItem request under this condition.
        delete_item(DeleteItemFluentBuilder) { set_condition_expression: condition }
    );
    into_request!(
        /// The conditions are the query's key condition.
        query(QueryFluentBuilder) { set_key_condition_expression: condition }
    );
    into_request!(
        /// A transaction's update with this update, condition, names and values.
        update_builder(UpdateBuilder) {
            set_update_expression: update, set_condition_expression: condition
        }
    );
    into_request!(
        /// A transaction's put under this condition.
        put_builder(PutBuilder) { set_condition_expression: condition }
    );
    into_request!(
        /// A transaction's delete under this condition.
        delete_builder(DeleteBuilder) { set_condition_expression: condition }
    );

    /// This update of the item `key` of `table`, as a transaction item.
    pub fn transact_update(
        &self,
        table: &str,
        key: (&str, AttributeValue),
    ) -> Result<TransactWriteItem, StoreError> {
        let update = self
            .update_builder(Update::builder().table_name(table).key(key.0, key.1))
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A put of `item` in `table` under this condition, as a transaction item.
    pub fn transact_put(&self, table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = self
            .put_builder(Put::builder().table_name(table).set_item(Some(item)))
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete of the item `key` of `table` under this condition, as a transaction item.
    pub fn transact_delete(
        &self,
        table: &str,
        key: (&str, AttributeValue),
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = self
            .delete_builder(Delete::builder().table_name(table).key(key.0, key.1))
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{n, s};

    #[test]
    fn one_placeholder_per_name_and_conditions_share_them() {
        let mut e = Expr::new();
        e.set("name", s("a"))
            .increment("count", 1)
            .remove("old")
            .add("set", n(1))
            .delete("other", n(2))
            .exists("id")
            .eq("group_id", n(3))
            .when(|e| format!("{} <= {}", e.name("last.due_at"), e.value(n(4))));
        let parts = e.parts();
        assert_eq!(
            parts.update.as_deref(),
            Some("SET #a0 = :v0, #a1 = #a1 + :v1 REMOVE #a2 ADD #a3 :v2 DELETE #a4 :v3")
        );
        assert_eq!(
            parts.condition.as_deref(),
            Some("attribute_exists(#a5) AND #a6 = :v4 AND #a7.#a8 <= :v5")
        );
        let names = parts.names.unwrap();
        assert_eq!(names["#a6"], "group_id");
        assert_eq!(names["#a8"], "due_at");
        assert_eq!(parts.values.unwrap()[":v4"], n(3));
    }

    #[test]
    fn an_empty_expression_sets_nothing() {
        let parts = Expr::new().parts();
        assert!(parts.update.is_none() && parts.condition.is_none());
        assert!(parts.names.is_none() && parts.values.is_none());
    }
}
