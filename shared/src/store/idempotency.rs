//! Idempotency keys: the first answer to a request carrying an `Idempotency-Key` is kept
//! for a day and returned again for the same key and the same request, without doing the
//! work twice. A key is taken with a conditional write, so two concurrent first requests
//! cannot both proceed.

use super::attributes::{BODY, CHUNKS, EXPIRES_AT, FINGERPRINT, IDEM_KEY, STATUS};
use super::{n, s, Expr, Item, StoreError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

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

impl super::Store {
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
        let put = self
            .ddb
            .put_item()
            .table_name(&self.res.idempotency_table)
            .item(IDEM_KEY, s(key))
            .item(FINGERPRINT, s(fingerprint))
            .item(EXPIRES_AT, n(now + hold_seconds))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let result = Expr::new()
            .absent_or(IDEM_KEY, |e| e.compared(EXPIRES_AT, "<", n(now)))
            .put_item(put)
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
        if text(&old, FINGERPRINT).as_deref() != Some(fingerprint) {
            return Ok(Begin::Mismatch);
        }
        let (Some(status), Some(chunks)) = (number(&old, STATUS), number(&old, CHUNKS)) else {
            return Ok(Begin::InProgress);
        };
        let mut body = String::new();
        for i in 0..chunks {
            let out = self
                .ddb
                .get_item()
                .table_name(&self.res.idempotency_table)
                .key(IDEM_KEY, s(chunk_key(key, i)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("GetItem idempotency", e))?;
            let part = out.item.and_then(|item| text(&item, BODY)).ok_or_else(|| {
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
                .item(IDEM_KEY, s(chunk_key(key, i)))
                .item(BODY, s(*chunk))
                .item(EXPIRES_AT, n(expires))
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("PutItem idempotency", e))?;
        }
        let update = self
            .ddb
            .update_item()
            .table_name(&self.res.idempotency_table)
            .key(IDEM_KEY, s(key));
        Expr::new()
            .eq(FINGERPRINT, s(fingerprint))
            .set(STATUS, n(status))
            .set(CHUNKS, n(chunks.len()))
            .set(EXPIRES_AT, n(expires))
            .update_item(update)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateItem idempotency", e))?;
        Ok(())
    }

    /// Lets a key go after a request that did not complete (a 5xx), so a retry can run.
    pub async fn abandon_idempotent(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let delete = self
            .ddb
            .delete_item()
            .table_name(&self.res.idempotency_table)
            .key(IDEM_KEY, s(key));
        let result = Expr::new()
            .eq(FINGERPRINT, s(fingerprint))
            .not_exists(CHUNKS)
            .delete_item(delete)
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
