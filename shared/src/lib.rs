//! dcbackup: backup and restore orchestration for distributed clouds, on AWS Lambda,
//! DynamoDB and SQS. This crate holds everything the functions share: the domain and its
//! rules, the DynamoDB adapter, the dcmanager wire format, the HTTP API handlers,
//! configuration and resource definitions. The functions under `functions/` only wire it.

pub mod agent_client;
pub mod api;
pub mod auth;
pub mod central;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod operations;
pub mod provision;
pub mod resources;
pub mod retention;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod sweeper;
pub mod wire;
pub mod worker;
