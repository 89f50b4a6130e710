//! dcbackup: backup and restore orchestration for distributed clouds, on AWS Lambda,
//! DynamoDB and SQS. This crate holds everything the functions share; each function under
//! `functions/` is a `main` of one line that calls [`runtime`].
//!
//! # Layout
//!
//! A request goes down these layers; the store and the domain know nothing above them:
//!
//! - [`runtime`]: what a function's `main` calls — JSON logs, AWS clients from the
//!   environment, the Lambda loop around the handler of its kind (HTTP route, worker,
//!   scheduler, sweeper).
//! - [`api`]: the HTTP routes, declared once in one table ([`api::ROUTES`]: each
//!   [`api::Route`]'s function, method, path template, policy rule and handler), and
//!   `handle`, which authenticates and hands the request to its route's handler: it parses
//!   the body into a typed command and renders dcmanager's answer ([`wire`]), with one
//!   error → HTTP map (`api/error.rs`); `api/idempotency.rs` runs a subcloud-backup command
//!   once per [`api::IdempotencyKey`].
//! - [`auth`]: the [`auth::Authenticator`] every route calls first — its configuration
//!   (`auth/config.rs`), token extraction, JWT verification ([`auth::jwt`]) with RS256/ES256
//!   keys read, fetched and cached by `auth/jwks.rs`, and oslo.policy: the check-string parser
//!   (`auth/policy/parser.rs`), loading and evaluation ([`auth::policy`]) and dcmanager's
//!   default rules ([`auth::policy::rules`]).
//! - [`operations`]: the one way to start backup/restore operations — the API's typed
//!   commands, from the subcloud-backup routes and from the [`scheduler`] (which parses a
//!   schedule's options as the API would): claims each subcloud's slot with one
//!   conditional write that keeps its operation record, and sends its job ([`jobs`]) to the
//!   queue.
//! - [`worker`]: takes a job from the queue and drives the operation through its states on
//!   the subcloud's agent ([`agent_client`]), with the central copies in S3 ([`central`]):
//!   the batch handler and shared poll machinery in `worker/mod.rs`, each operation's flow in
//!   `worker/backup.rs` (create), `worker/restore.rs` and `worker/delete.rs`. The agent
//!   protocol's types, worker tokens and TLS files come from the small `dcbackup-protocol`
//!   crate (`protocol/`), which the agent links too; [`domain::Release`] is its `Release`.
//! - [`sweeper`]: recovers slots whose lease expired and judges dead-lettered jobs;
//!   [`retention`] trims scheduled backups beyond a schedule's `retain`.
//! - [`store`]: the DynamoDB adapter, one facade ([`store::Store`]) over every table — every
//!   write that depends on what is stored is conditional; `store/slot.rs` is the claim itself
//!   (SPEC §3). One file per aggregate (subclouds, groups, names, schedules, backups,
//!   operations, idempotency keys); attribute names only from `store/attributes.rs`, every
//!   expression built by `store/expr.rs` ([`store::Expr`]).
//! - [`domain`]: the values of SPEC §1 (subclouds, groups, names, states, operations,
//!   schedules), parsed once at the edge; no I/O. State values are spelled only in
//!   `domain/state.rs`; a slot's state is a typed `ClaimedState` / `SlotState`.
//! - [`config`] reads the environment once per cold start; [`resources`] defines the tables,
//!   queues and bucket, which [`provision`] creates locally and the SAM template declares.

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
