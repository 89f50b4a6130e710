//! Idempotency keys: the first answer to a request carrying an `Idempotency-Key` is kept
//! for a day and returned again for the same key and the same request, without doing the
//! work twice. A key is taken with a conditional write, so two concurrent first requests
//! cannot both proceed.

use super::{n, s, Item, StoreError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use std::collections::HashMap;

/// How long a kept answer is returned again.
pub const ANSWER_TTL_SECONDS: u64 = 24 * 3600;
/// Answers are kept in chunks below DynamoDB's 400 KB item limit.
const CHUNK_BYTES: usize = 300 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key is ours: do the work, then `finish_idempotent`.
    New,
    /// The same request was answered before: this is its answer.
    Replay { status: u16, body: String },
    /// The key was used with a different request.
    Mismatch,
    /// The same request is being answered right now.
    InProgress,
}

impl super::Inventory {
    /// Takes `key` for a request with this fingerprint at `now` (Unix seconds), for
    /// `hold_seconds`: the function's own timeout and a margin
    /// (`Config::idempotency_hold_seconds`), so a live request is never overtaken while one
    /// whose instance died frees its key for a retry soon after. A key whose hold expired
    /// without an answer is taken over.
    pub async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        now: u64,
        hold_seconds: u64,
    ) -> Result<Begin, StoreError> {
        let result = self
            .ddb
            .put_item()
            .table_name(&self.res.idempotency_table)
            .item("idem_key", s(key))
            .item("fingerprint", s(fingerprint))
            .item("expires_at", n(now + hold_seconds))
            .condition_expression("attribute_not_exists(idem_key) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(Begin::New),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    c.item().cloned().unwrap_or_default()
                }
                _ => return Err(StoreError::from_sdk("PutItem idempotency", e)),
            },
        };
        let text = |item: &Item, name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |item: &Item, name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok()?.parse::<u64>().ok())
        };
        if text(&old, "fingerprint").as_deref() != Some(fingerprint) {
            return Ok(Begin::Mismatch);
        }
        let (Some(status), Some(chunks)) = (number(&old, "status"), number(&old, "chunks")) else {
            return Ok(Begin::InProgress);
        };
        let mut body = String::new();
        for i in 0..chunks {
            let out = self
                .ddb
                .get_item()
                .table_name(&self.res.idempotency_table)
                .key("idem_key", s(chunk_key(key, i)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("GetItem idempotency", e))?;
            let part = out
                .item
                .and_then(|item| text(&item, "body"))
                .ok_or_else(|| {
                    StoreError::decode(
                        "idempotent answer",
                        format!("chunk {i} of {key} is missing"),
                    )
                })?;
            body.push_str(&part);
        }
        let status =
            u16::try_from(status).map_err(|e| StoreError::decode("idempotent status", e))?;
        Ok(Begin::Replay { status, body })
    }

    /// Keeps the answer for a day. The chunks are written before the head item says how
    /// many there are, so a replay never sees a partial answer.
    pub async fn finish_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        status: u16,
        body: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let expires = now + ANSWER_TTL_SECONDS;
        let chunks = chunk_str(body, CHUNK_BYTES);
        for (i, chunk) in chunks.iter().enumerate() {
            self.ddb
                .put_item()
                .table_name(&self.res.idempotency_table)
                .item("idem_key", s(chunk_key(key, i)))
                .item("body", s(*chunk))
                .item("expires_at", n(expires))
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("PutItem idempotency", e))?;
        }
        let mut values: Item = HashMap::new();
        values.insert(":fp".into(), s(fingerprint));
        values.insert(":status".into(), n(status));
        values.insert(":chunks".into(), n(chunks.len()));
        values.insert(":expires".into(), n(expires));
        self.ddb
            .update_item()
            .table_name(&self.res.idempotency_table)
            .key("idem_key", s(key))
            .update_expression("SET #status = :status, chunks = :chunks, expires_at = :expires")
            .condition_expression("fingerprint = :fp")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateItem idempotency", e))?;
        Ok(())
    }

    /// Lets a key go after a request that did not complete (a 5xx), so a retry can run.
    pub async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let result = self
            .ddb
            .delete_item()
            .table_name(&self.res.idempotency_table)
            .key("idem_key", s(key))
            .condition_expression("fingerprint = :fp AND attribute_not_exists(chunks)")
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        match result {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::from_sdk("DeleteItem idempotency", e))
            }
            _ => Ok(()),
        }
    }
}

/// Where chunk `i` of a key's answer is kept: apart from every key (keys are digests).
fn chunk_key(key: &str, i: impl std::fmt::Display) -> String {
    format!("chunk#{key}#{i}")
}

/// Splits text into pieces of at most `max` bytes on character boundaries.
fn chunk_str(text: &str, max: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    chunks
}

#[cfg(test)]
mod tests {
    use super::chunk_str;

    #[test]
    fn chunks_respect_characters_and_sizes() {
        assert_eq!(chunk_str("", 4), [""]);
        assert_eq!(chunk_str("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        let text = "ééééé";
        let parts = chunk_str(text, 3);
        assert!(parts.iter().all(|p| p.len() <= 3));
        assert_eq!(parts.concat(), text);
    }
}
