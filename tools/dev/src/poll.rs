//! `dcbackup-dev poll`: the jobs queue's event source mapping for `make run`. It long-polls
//! the jobs queue and hands each batch to the worker through `cargo lambda watch`'s Invoke
//! API as Lambda's SQS event source mapping does: the event as Lambda builds it, partial
//! batch responses honoured (the messages the worker did not report are deleted; after an
//! invocation error none is, so they come back after the visibility timeout and, after
//! `maxReceiveCount` receives, land on the dead-letter queue). Every few seconds it also
//! invokes the sweeper and the scheduler, as their EventBridge schedules would (with the
//! every-minute tick's event: the scheduler fires what is due by then).

use anyhow::{bail, Context};
use aws_lambda_events::event::sqs::SqsBatchResponse;
use dcbackup::config::Config;
use dcbackup::jobs;
use dcbackup::runtime::Clients;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: dcbackup-dev poll [--api http://127.0.0.1:9000] [--sweep-every SECONDS] [--schedule-every SECONDS] (0: never)";

/// Lambda's limit for one invocation; also covers watch starting a function on its first call.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(900);
/// SQS's longest long poll.
const WAIT_SECONDS: i32 = 20;
const BATCH_SIZE: i32 = 10;

struct Options {
    api: String,
    sweep_every: u64,
    schedule_every: u64,
}

fn options(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        api: "http://127.0.0.1:9000".to_owned(),
        sweep_every: 10,
        schedule_every: 5,
    };
    while let Some(flag) = args.next() {
        let (flag, value) = match flag.split_once('=') {
            Some((f, v)) => (f.to_owned(), v.to_owned()),
            None => {
                let value = args
                    .next()
                    .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
                (flag, value)
            }
        };
        match flag.as_str() {
            "--api" => options.api = value.trim_end_matches('/').to_owned(),
            "--sweep-every" => {
                options.sweep_every = value.parse().context("--sweep-every takes seconds")?
            }
            "--schedule-every" => {
                options.schedule_every = value.parse().context("--schedule-every takes seconds")?
            }
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    Ok(options)
}

/// Why an invocation did not answer.
enum InvokeError {
    /// Nothing listens (yet): try again shortly.
    Down(String),
    /// The call was made and failed: the function's error, a bad status, a timeout.
    Failed(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Down(why) => write!(f, "the API is not reachable: {why}"),
            InvokeError::Failed(why) => f.write_str(why),
        }
    }
}

#[derive(Clone)]
struct Invoker {
    http: Client<HttpConnector, Full<Bytes>>,
    api: String,
}

impl Invoker {
    fn new(api: String) -> Invoker {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Invoker {
            http: Client::builder(TokioExecutor::new()).build(connector),
            api,
        }
    }

    /// One synchronous invocation (`RequestResponse`): the function's JSON answer.
    async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, InvokeError> {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.api);
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| InvokeError::Failed(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    InvokeError::Down(e.to_string())
                } else {
                    InvokeError::Failed(format!("{url}: {e}"))
                }
            })?;
            let status = response.status();
            let function_error = response
                .headers()
                .get("x-amz-function-error")
                .map(|v| v.to_str().unwrap_or("error").to_owned());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| InvokeError::Failed(format!("{url}: {e}")))?
                .to_bytes();
            let text = String::from_utf8_lossy(&body);
            let short: String = text.chars().take(300).collect();
            if !status.is_success() {
                return Err(InvokeError::Failed(format!(
                    "{function} answered {status}: {short}"
                )));
            }
            if let Some(kind) = function_error {
                return Err(InvokeError::Failed(format!(
                    "{function} failed ({kind}): {short}"
                )));
            }
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                InvokeError::Failed(format!("{function} answered no JSON ({e}): {short}"))
            })?;
            // A function error the server passed on as a plain answer.
            if value.get("errorType").is_some() && value.get("errorMessage").is_some() {
                return Err(InvokeError::Failed(format!("{function} failed: {short}")));
            }
            Ok(value)
        };
        tokio::time::timeout(INVOCATION_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                InvokeError::Failed(format!(
                    "{function}: no answer within {INVOCATION_TIMEOUT:?}"
                ))
            })?
    }

    /// Invokes until the API is reachable (it may not be up yet), backing off up to 5 s.
    /// Gives up after `patience` of being unreachable.
    async fn invoke_patiently(
        &self,
        function: &str,
        payload: &Value,
        patience: Duration,
    ) -> Result<Value, InvokeError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.invoke(function, payload).await {
                Err(InvokeError::Down(why)) if start.elapsed() < patience => {
                    tracing_line(
                        &format!("waiting for the API at {} ({why})", self.api),
                        start,
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// Logs a "waiting" line at once and then at most every 10 s, so a slow start (the API
/// not up yet, a function compiling) does not flood the terminal.
fn tracing_line(message: &str, since: Instant) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        let waited = since.elapsed();
        if waited < Duration::from_secs(1) {
            log(message);
        } else {
            log(&format!("{message} [waiting {}s]", waited.as_secs()));
        }
    }
}

fn log(message: &str) {
    println!("poller: {message}");
}

pub async fn run(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let options = options(args)?;
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    let sqs = clients.sqs;
    let region = sqs
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let queue = config.resources.jobs_queue.clone();

    // The queue exists once the stack is provisioned; wait for it like for the API.
    let started = Instant::now();
    let queue_url = loop {
        match sqs.get_queue_url().queue_name(&queue).send().await {
            Ok(out) => break out.queue_url.context("GetQueueUrl answered no URL")?,
            Err(e) if started.elapsed() < Duration::from_secs(120) => {
                tracing_line(
                    &format!(
                        "waiting for queue {queue}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ),
                    started,
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "{}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ))
                .context(format!("looking up queue {queue}"))
            }
        }
    };
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|out| {
            out.attributes.and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
        })
        .unwrap_or_else(|| format!("arn:aws:sqs:{region}:000000000000:{queue}"));

    let invoker = Invoker::new(options.api.clone());
    // Start the worker before the first job needs it (cargo lambda watch starts each function,
    // rebuilding it after a change, on its first call): an empty batch is a no-op for it.
    let warm = Instant::now();
    loop {
        match invoker
            .invoke_patiently("worker", &json!({"Records": []}), Duration::from_secs(600))
            .await
        {
            Ok(_) => {
                log(&format!("worker ready after {:.1?}", warm.elapsed()));
                break;
            }
            // It may not build yet (a build error, or a build longer than watch waits).
            Err(e) if warm.elapsed() < Duration::from_secs(600) => {
                log(&format!("worker not ready yet, trying again in 5 s: {e}"));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => {
                log(&format!("worker not ready ({e}); polling anyway"));
                break;
            }
        }
    }
    if options.sweep_every > 0 {
        tokio::spawn(sweep_forever(
            invoker.clone(),
            Duration::from_secs(options.sweep_every),
        ));
    }
    if options.schedule_every > 0 {
        tokio::spawn(schedule_forever(
            invoker.clone(),
            Duration::from_secs(options.schedule_every),
        ));
    }
    log(&format!(
        "polling {queue_url} into {}/2015-03-31/functions/worker/invocations (batches of up to {BATCH_SIZE}){}{}",
        options.api,
        if options.sweep_every > 0 {
            format!("; sweeper every {} s", options.sweep_every)
        } else {
            String::new()
        },
        if options.schedule_every > 0 {
            format!("; scheduler every {} s", options.schedule_every)
        } else {
            String::new()
        }
    ));

    let mut quiet_errors = Duration::from_millis(500);
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(BATCH_SIZE)
            .wait_time_seconds(WAIT_SECONDS)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => {
                quiet_errors = Duration::from_millis(500);
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                log(&format!(
                    "receiving from {queue}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ));
                tokio::time::sleep(quiet_errors).await;
                quiet_errors = (quiet_errors * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        deliver(&invoker, &sqs, &queue_url, &queue_arn, &region, messages).await;
    }
}

/// One batch: the worker invoked with Lambda's event, then the handled messages deleted.
async fn deliver(
    invoker: &Invoker,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    queue_arn: &str,
    region: &str,
    messages: Vec<aws_sdk_sqs::types::Message>,
) {
    let started = Instant::now();
    let event = serde_json::to_value(jobs::sqs_event(&messages, queue_arn, region))
        .expect("an SQS event is JSON");
    let receives: Vec<String> = messages
        .iter()
        .map(|m| {
            m.attributes
                .as_ref()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .cloned()
                .unwrap_or_else(|| "?".to_owned())
        })
        .collect();
    let kinds = summary(&messages);
    let answer = invoker
        .invoke_patiently("worker", &event, Duration::from_secs(60))
        .await;
    let handled = match answer
        .map_err(|e| e.to_string())
        .and_then(batch_response)
        .and_then(|response| jobs::handled(&messages, &response).map_err(|e| e.to_string()))
    {
        Ok(handled) => handled,
        Err(why) => {
            log(&format!(
                "batch of {} [{kinds}] (receive count {}) failed after {:.1?}: {why}; none deleted, they come back after the visibility timeout",
                messages.len(),
                receives.join(","),
                started.elapsed()
            ));
            return;
        }
    };
    let mut deleted = 0;
    for m in &handled {
        let id = m.message_id.as_deref().unwrap_or_default();
        match sqs
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(m.receipt_handle.as_deref().unwrap_or_default())
            .send()
            .await
        {
            Ok(_) => deleted += 1,
            Err(e) => log(&format!(
                "deleting message {id}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )),
        }
    }
    log(&format!(
        "batch of {} [{kinds}] -> worker in {:.1?}: {deleted} done, {} to retry",
        messages.len(),
        started.elapsed(),
        messages.len() - handled.len()
    ));
}

/// The worker's answer as Lambda reads a partial batch response: none, `null` or an empty
/// list reports no failure; anything that is not a list of `itemIdentifier`s fails the batch.
fn batch_response(answer: Value) -> Result<SqsBatchResponse, String> {
    match answer.get("batchItemFailures") {
        None | Some(Value::Null) => Ok(SqsBatchResponse::default()),
        Some(_) => serde_json::from_value(answer)
            .map_err(|e| format!("the worker's answer is no partial batch response: {e}")),
    }
}

/// "create subcloud1, poll subcloud2": what a batch carries, from the job bodies.
fn summary(messages: &[aws_sdk_sqs::types::Message]) -> String {
    messages
        .iter()
        .map(|m| {
            let body: Value = m
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            match (body["kind"].as_str(), body["subcloud_name"].as_str()) {
                (Some(kind), Some(name)) => {
                    let attempt = body["attempt"].as_u64().unwrap_or(0);
                    if attempt > 0 {
                        format!("{kind} {name} #{attempt}")
                    } else {
                        format!("{kind} {name}")
                    }
                }
                _ => "?".to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sweeper's schedule: one invocation every `every`, the next only after the last ended.
async fn sweep_forever(invoker: Invoker, every: Duration) {
    loop {
        match invoker
            .invoke_patiently("sweeper", &json!({}), Duration::from_secs(600))
            .await
        {
            Ok(report) => {
                let recovered = report["recovered"].as_u64().unwrap_or(0);
                let dead = report["dead_lettered"].as_u64().unwrap_or(0);
                if recovered > 0 || dead > 0 {
                    log(&format!(
                        "sweeper: {recovered} expired lease(s) recovered, {dead} dead-lettered operation(s) ended"
                    ));
                }
            }
            Err(e) => log(&format!("sweeper: {e}")),
        }
        tokio::time::sleep(every).await;
    }
}

/// The scheduler's EventBridge schedule, faster: a tick every `every`, the next only after
/// the last ended. A firing is logged; a quiet tick is not.
async fn schedule_forever(invoker: Invoker, every: Duration) {
    let tick = json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "detail": {},
    });
    loop {
        match invoker
            .invoke_patiently("scheduler", &tick, Duration::from_secs(600))
            .await
        {
            Ok(report) => {
                let fired = report["fired"].as_u64().unwrap_or(0);
                let missed = report["missed"].as_u64().unwrap_or(0);
                if fired > 0 || missed > 0 {
                    log(&format!(
                        "scheduler: {fired} schedule(s) fired ({} backup(s) started, {} subcloud(s) skipped), {missed} missed",
                        report["accepted"].as_u64().unwrap_or(0),
                        report["skipped"].as_u64().unwrap_or(0),
                    ));
                }
            }
            Err(e) => log(&format!("scheduler: {e}")),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};

    fn batch() -> Vec<Message> {
        ["a", "b"]
            .map(|id| Message::builder().message_id(id).build())
            .to_vec()
    }

    /// The ids of the messages deleted after `answer`, or why the whole batch failed.
    fn deleted(answer: Value) -> Result<Vec<String>, String> {
        let messages = batch();
        let response = batch_response(answer)?;
        let handled = jobs::handled(&messages, &response).map_err(|e| e.to_string())?;
        Ok(handled
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect())
    }

    #[test]
    fn partial_batch_responses_as_lambda_reads_them() {
        for none in [
            json!({"batchItemFailures": []}),
            json!({}),
            json!({"batchItemFailures": null}),
        ] {
            assert_eq!(deleted(none.clone()).unwrap(), ["a", "b"], "{none}");
        }
        assert_eq!(
            deleted(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})).unwrap(),
            ["a"]
        );
        // An identifier not in the batch, empty or missing fails the whole batch.
        for bad in [
            json!({"batchItemFailures": [{"itemIdentifier": "c"}]}),
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{}]}),
            json!({"batchItemFailures": "a"}),
        ] {
            assert!(deleted(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_have_lambdas_shape() {
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("r1")
            .body("{}")
            .md5_of_body("99914b932bd37a50b983c5e7c90ae93b")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1795600800000")
            .message_attributes(
                "trace",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("x")
                    .build()
                    .unwrap(),
            )
            .build();
        let event = jobs::sqs_event(
            &[message],
            "arn:aws:sqs:us-east-1:000000000000:q",
            "us-east-1",
        );
        let mut record = serde_json::to_value(&event).unwrap()["Records"][0].take();
        // Absent values may be null or left out: Lambda's runtime reads them alike.
        record.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        record["messageAttributes"]["trace"]
            .as_object_mut()
            .unwrap()
            .retain(|_, v| !v.is_null());
        assert_eq!(
            record,
            json!({
                "messageId": "m1",
                "receiptHandle": "r1",
                "body": "{}",
                "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1795600800000"},
                "messageAttributes": {"trace": {"stringValue": "x", "stringListValues": [],
                    "binaryListValues": [], "dataType": "String"}},
                "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
                "awsRegion": "us-east-1",
            })
        );
    }
}
