//! Creates the resources of `resources` where they are missing: tables, the jobs queue
//! with its dead-letter queue and the backup bucket — what the SAM template creates, and no
//! items (the Default group is made by the code on its first need). Running it again
//! changes nothing. Used by `make run`, by the tests (each with its own prefix) and by
//! anyone pointing dcbackup at a fresh account or emulator.

use crate::resources::{Queue, Resources, Table};
use crate::runtime::Clients;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::TimeToLiveSpecification;
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("table {table}: {detail}")]
    Table { table: String, detail: String },
    #[error("queue {queue}: {detail}")]
    Queue { queue: String, detail: String },
    #[error("bucket {bucket}: {detail}")]
    Bucket { bucket: String, detail: String },
}

pub async fn provision(clients: &Clients, res: &Resources) -> Result<(), ProvisionError> {
    for table in res.tables() {
        ensure_table(&clients.dynamodb, &table).await?;
    }
    let mut arns = HashMap::new();
    for queue in res.queues() {
        let arn = ensure_queue(&clients.sqs, &queue, &arns).await?;
        arns.insert(queue.name.clone(), arn);
    }
    ensure_bucket(&clients.s3, &res.backup_bucket).await?;
    Ok(())
}

async fn ensure_table(ddb: &aws_sdk_dynamodb::Client, table: &Table) -> Result<(), ProvisionError> {
    let fail = |detail: String| ProvisionError::Table {
        table: table.name.clone(),
        detail,
    };
    let described = ddb.describe_table().table_name(&table.name).send().await;
    match described {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(e) => {
            return Err(fail(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ))
        }
    }
    let created = ddb
        .create_table()
        .table_name(&table.name)
        .set_attribute_definitions(Some(table.attribute_definitions()))
        .set_key_schema(Some(table.key_schema()))
        .set_global_secondary_indexes(table.global_secondary_indexes())
        .billing_mode(table.billing_mode())
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Another provisioner created it meanwhile.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(fail(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
            ))
        }
    }
    ddb.wait_until_table_exists()
        .table_name(&table.name)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map_err(|e| fail(format!("did not become active: {e}")))?;
    if let Some(attribute) = table.ttl_attribute {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        ddb.update_time_to_live()
            .table_name(&table.name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| fail(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
    }
    Ok(())
}

/// Creates the queue (CreateQueue is idempotent for the same attributes) and returns its ARN.
async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &Queue,
    arns: &HashMap<String, String>,
) -> Result<String, ProvisionError> {
    let fail = |detail: String| ProvisionError::Queue {
        queue: queue.name.clone(),
        detail,
    };
    let mut create = sqs
        .create_queue()
        .queue_name(&queue.name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            queue.visibility_timeout_seconds.to_string(),
        )
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            queue.retention_seconds.to_string(),
        );
    if let Some((dead_letter, max_receives)) = &queue.redrive {
        let arn = arns.get(dead_letter).ok_or_else(|| {
            fail(format!(
                "its dead-letter queue {dead_letter} is defined after it"
            ))
        })?;
        let policy = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": max_receives.to_string(),
        });
        create = create.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let url = create
        .send()
        .await
        .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url
        .ok_or_else(|| fail("CreateQueue returned no URL".to_owned()))?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    attrs
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| fail("GetQueueAttributes returned no QueueArn".to_owned()))
}

async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ProvisionError> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(ProvisionError::Bucket {
            bucket: bucket.to_owned(),
            detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }),
    }
}
