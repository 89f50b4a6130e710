//! The job message handed from the API to the worker through SQS, and the queue it goes on.
//! The message is versioned and carries no secret: the worker re-reads everything else.

use crate::domain::{OpId, OpKind, OpOptions, Operation, Release};
use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// SendMessageBatch takes at most 10 entries a call.
pub const SEND_BATCH_MAX: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// The schema version; a worker refuses versions it does not know.
    pub version: u32,
    pub op_id: OpId,
    pub kind: OpKind,
    pub subcloud_id: u64,
    pub subcloud_name: String,
    pub release: Release,
    /// The fencing version the claim set: the worker may write only while it still holds.
    pub fence: u64,
    pub options: OpOptions,
    /// Restore: the address its agent is reached at instead of the registered agent-url's
    /// host, on the registered port (dcmanager's `restore_values.bootstrap_address` for this
    /// subcloud, parsed by the API). A message with an address that does not parse is
    /// unreadable, so none reaches the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_address: Option<IpAddr>,
    /// 0 for the job as queued by the API; n for the n-th delayed poll of its agent job.
    /// With `poll_token`, it names the one live message of the operation's poll chain: the
    /// subcloud item records both (`poll_seq`, `poll_token`) in the conditional write that
    /// hands the chain on, and a delivery that does not match them is a duplicate.
    #[serde(default)]
    pub attempt: u32,
    /// A random token set by the delivery that sent this poll (none on the API's job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_token: Option<String>,
    /// How many starts of the agent job went unanswered before this message (the agent
    /// dedups by op id, so an unanswered start is asked again, up to a bound).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_tries: u32,
    /// The backup schedule that started the operation, whose retention applies after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<u64>,
}

impl JobMessage {
    /// 2: the claim keeps its operation's record on the subcloud, and the worker that takes
    /// the API's job moves it to the operations table (a version-1 worker would not).
    pub const VERSION: u32 = 2;

    /// Whether this worker can act on a job of `version`: version 1's records are already in
    /// the operations table, so its jobs are handled as they are.
    pub fn readable(version: u32) -> bool {
        (1..=Self::VERSION).contains(&version)
    }

    /// The job of a recorded operation, with the restore's bootstrap address if it has one.
    pub fn for_operation(op: &Operation, bootstrap_address: Option<IpAddr>) -> JobMessage {
        JobMessage {
            version: Self::VERSION,
            op_id: op.op_id.clone(),
            kind: op.kind,
            subcloud_id: op.subcloud_id,
            subcloud_name: op.subcloud_name.clone(),
            release: op.release.clone(),
            fence: op.fence,
            options: op.options.clone(),
            bootstrap_address,
            attempt: 0,
            poll_token: None,
            start_tries: 0,
            schedule_id: op.schedule_id,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why the jobs queue did not take, give or delete a message. Cloneable (sources are shared)
/// so that one failure of a batch is every job's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// SQS refused the request or did not answer (throttled, unreachable, timed out).
    #[error("{operation} on queue {queue}: {}", aws_sdk_sqs::error::DisplayErrorContext(source.as_ref()))]
    Sqs {
        operation: &'static str,
        queue: String,
        #[source]
        source: Arc<aws_sdk_sqs::Error>,
    },
    /// GetQueueUrl answered without a URL.
    #[error("GetQueueUrl {0} returned no URL")]
    NoUrl(String),
    /// A job that cannot be written as JSON (a defect).
    #[error("the job does not encode: {0}")]
    Encode(#[source] Arc<serde_json::Error>),
    /// A batch entry the SDK would not build (a defect).
    #[error("the job's batch entry does not build: {0}")]
    Entry(#[source] Arc<aws_sdk_sqs::error::BuildError>),
    /// SendMessageBatch refused this entry (SQS's reason).
    #[error("the queue refused the job ({0})")]
    Refused(String),
    /// SendMessageBatch answered without naming this entry.
    #[error("the queue did not acknowledge the job")]
    Unacknowledged,
}

impl QueueError {
    fn sqs<E, R>(
        operation: &'static str,
        queue: &str,
        err: aws_sdk_sqs::error::SdkError<E, R>,
    ) -> Self
    where
        aws_sdk_sqs::Error: From<aws_sdk_sqs::error::SdkError<E, R>>,
    {
        QueueError::Sqs {
            operation,
            queue: queue.to_owned(),
            source: Arc::new(err.into()),
        }
    }
}

fn encode(job: &JobMessage) -> Result<String, QueueError> {
    serde_json::to_string(job).map_err(|e| QueueError::Encode(Arc::new(e)))
}

#[derive(Debug)]
pub struct JobQueue {
    sqs: aws_sdk_sqs::Client,
    name: String,
    url: OnceCell<String>,
}

impl JobQueue {
    /// A queue known by name; its URL is `url` if given (as deployed), else looked up once
    /// on first use, so a cold start does no network I/O.
    pub fn new(sqs: aws_sdk_sqs::Client, name: String, url: Option<String>) -> JobQueue {
        JobQueue {
            sqs,
            name,
            url: url.map(OnceCell::from).unwrap_or_default(),
        }
    }

    pub async fn url(&self) -> Result<&str, QueueError> {
        self.url
            .get_or_try_init(|| async {
                self.sqs
                    .get_queue_url()
                    .queue_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| QueueError::sqs("GetQueueUrl", &self.name, e))?
                    .queue_url
                    .ok_or_else(|| QueueError::NoUrl(self.name.clone()))
            })
            .await
            .map(String::as_str)
    }

    /// Up to ten messages waiting on the queue, each with the handle that deletes it.
    pub async fn receive(&self) -> Result<Vec<(String, String)>, QueueError> {
        let url = self.url().await?.to_owned();
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| QueueError::sqs("ReceiveMessage", &self.name, e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.receipt_handle.unwrap_or_default(),
                    m.body.unwrap_or_default(),
                )
            })
            .collect())
    }

    pub async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let url = self.url().await?.to_owned();
        self.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(drop)
            .map_err(|e| QueueError::sqs("DeleteMessage", &self.name, e))
    }

    /// Sends one job to be delivered after `delay` (at most 15 minutes, SQS's limit).
    pub async fn send_delayed(
        &self,
        job: &JobMessage,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        let url = self.url().await?.to_owned();
        let body = encode(job)?;
        let seconds = i32::try_from(delay.as_secs().min(900)).unwrap_or(900);
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map(drop)
            .map_err(|e| QueueError::sqs("SendMessage", &self.name, e))
    }

    /// Sends every job, ten a call. Returns, for each job in order, `Err(why)` when the
    /// queue did not take it.
    pub async fn send_all(&self, jobs: &[JobMessage]) -> Vec<Result<(), QueueError>> {
        let url = match self.url().await {
            Ok(url) => url.to_owned(),
            Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(SEND_BATCH_MAX) {
            let entries: Result<Vec<_>, QueueError> = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(encode(job)?)
                        .build()
                        .map_err(|e| QueueError::Entry(Arc::new(e)))
                })
                .collect();
            let sent = match entries {
                Ok(entries) => self
                    .sqs
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| QueueError::sqs("SendMessageBatch", &self.name, e)),
                Err(e) => Err(e),
            };
            match sent {
                Ok(out) => {
                    let mut outcome: Vec<Result<(), QueueError>> =
                        vec![Err(QueueError::Unacknowledged); chunk.len()];
                    for ok in out.successful() {
                        if let Some(slot) = ok
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| outcome.get_mut(i))
                        {
                            *slot = Ok(());
                        }
                    }
                    for failed in out.failed() {
                        if let Some(slot) = failed
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| outcome.get_mut(i))
                        {
                            *slot = Err(QueueError::Refused(
                                failed.message().unwrap_or(failed.code()).to_owned(),
                            ));
                        }
                    }
                    results.extend(outcome);
                }
                Err(e) => {
                    tracing::error!(error = %e, "SendMessageBatch failed");
                    results.extend(chunk.iter().map(|_| Err(e.clone())));
                }
            }
        }
        results
    }
}

/// Lambda's SQS event for a batch of received messages, as its SQS event source mapping
/// builds it (the `aws:sqs` record of the AWS docs): `make run`'s poller and the tests' lab
/// hand the worker this, so both deliver what Lambda would.
pub fn sqs_event(
    messages: &[aws_sdk_sqs::types::Message],
    queue_arn: &str,
    region: &str,
) -> SqsEvent {
    let base64 = |blob: &aws_sdk_sqs::primitives::Blob| {
        let mut data = Base64Data::default();
        data.extend_from_slice(blob.as_ref());
        data
    };
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.md5_of_body = m.md5_of_body.clone();
            record.md5_of_message_attributes = m.md5_of_message_attributes.clone();
            record.attributes = m
                .attributes
                .iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect();
            record.message_attributes = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = value.string_value.clone();
                    attribute.binary_value = value.binary_value.as_ref().map(base64);
                    attribute.string_list_values =
                        value.string_list_values.clone().unwrap_or_default();
                    attribute.binary_list_values = value
                        .binary_list_values
                        .iter()
                        .flatten()
                        .map(base64)
                        .collect();
                    attribute.data_type = Some(value.data_type.clone());
                    (name.clone(), attribute)
                })
                .collect();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(queue_arn.to_owned());
            record.aws_region = Some(region.to_owned());
            record
        })
        .collect();
    event
}

/// A partial batch response that names a message not in its batch; Lambda then takes the
/// whole batch as failed (AWS docs, "Reporting batch item failures").
#[derive(Debug, thiserror::Error)]
#[error("the batch response names {0:?}, which is no message of the batch")]
pub struct UnknownBatchItem(pub String);

/// The messages of a batch that Lambda deletes after the function answered `response`: all
/// but those it reports as failed, which come back after their visibility timeout.
///
/// # Errors
/// [`UnknownBatchItem`] when `response` names a message not in `messages`: nothing is
/// deleted then.
pub fn handled<'m>(
    messages: &'m [aws_sdk_sqs::types::Message],
    response: &SqsBatchResponse,
) -> Result<Vec<&'m aws_sdk_sqs::types::Message>, UnknownBatchItem> {
    let id = |m: &aws_sdk_sqs::types::Message| m.message_id.clone().unwrap_or_default();
    if let Some(unknown) = response
        .batch_item_failures
        .iter()
        .find(|f| !messages.iter().any(|m| id(m) == f.item_identifier))
    {
        return Err(UnknownBatchItem(unknown.item_identifier.clone()));
    }
    Ok(messages
        .iter()
        .filter(|m| {
            !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id(m))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::JobMessage;
    use crate::domain::{OpId, OpKind, OpOptions, Release};

    fn job() -> serde_json::Value {
        let job = JobMessage {
            version: JobMessage::VERSION,
            op_id: OpId::new(),
            kind: OpKind::Restore,
            subcloud_id: 1,
            subcloud_name: "sc1".into(),
            release: Release::parse("release", "24.09").unwrap(),
            fence: 1,
            options: OpOptions::default(),
            bootstrap_address: Some("10.0.0.7".parse().unwrap()),
            attempt: 0,
            poll_token: None,
            start_tries: 0,
            schedule_id: None,
        };
        serde_json::to_value(&job).unwrap()
    }

    #[test]
    fn a_worker_reads_the_versions_it_knows() {
        assert!(
            JobMessage::readable(1),
            "queued before records moved to the claim"
        );
        assert!(JobMessage::readable(JobMessage::VERSION));
        assert!(!JobMessage::readable(0));
        assert!(!JobMessage::readable(JobMessage::VERSION + 1));
    }

    #[test]
    fn the_bootstrap_address_crosses_the_queue_parsed() {
        let sent = job();
        assert_eq!(sent["bootstrap_address"], "10.0.0.7");
        let read: JobMessage = serde_json::from_value(sent).unwrap();
        assert_eq!(read.bootstrap_address, Some("10.0.0.7".parse().unwrap()));
        let mut bad = job();
        bad["bootstrap_address"] = "10.0.0.999".into();
        assert!(serde_json::from_value::<JobMessage>(bad).is_err());
    }
}
