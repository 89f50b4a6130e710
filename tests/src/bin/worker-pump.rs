//! A worker in its own OS process, for the test that kills one mid-operation: reads
//! `{"prefix": ..., "lease_seconds": ...}` on stdin and pumps the stack's jobs queue into a
//! worker until it is killed, printing one line per delivered job.

use dcbackup_tests::lab::{lab_worker, pump_once};
use dcbackup_tests::Stack;
use std::io::Read;

#[tokio::main]
async fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("reading the spec");
    let spec: serde_json::Value = serde_json::from_str(&input).expect("a JSON spec on stdin");
    let stack = Stack::attach(spec["prefix"].as_str().expect("prefix")).await;
    let worker = lab_worker(
        &stack,
        spec["lease_seconds"].as_u64().expect("lease_seconds"),
    );
    loop {
        for body in pump_once(&worker, &stack.clients.sqs).await {
            println!("{body}");
        }
    }
}
