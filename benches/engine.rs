//! `cargo bench --bench engine`: the engine's per-step overhead — render the request, send it through a
//! Replay transport (no network), record the output — on a fixed copy of the Razorpay flow (3 call steps).
//! Target (issue 4): ≤ 20 µs per step. Criterion reports time per element = per step.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::engine::plan::compile_flow;
use weft::engine::run::{Direct, EventInput, RunStatus, Runner};
use weft::source::SourceFile;
use weft::transport::cassette::Cassette;
use weft::transport::replay::Replay;
use weft::validate::ProjectContext;

fn bench(c: &mut Criterion) {
    let ctx = ProjectContext::from_source(&SourceFile::new("weft.yaml", include_str!("data/weft.yaml")));
    let flow = SourceFile::new("payment-captured.yaml", include_str!("../tests/fixtures/payment-captured.flow.yaml"));
    let plan = Arc::new(compile_flow(&flow, &ctx).expect("flow compiles"));
    let cassette = weft::dsl::yaml::parse(&SourceFile::new(
        "c.yaml",
        include_str!("../tests/fixtures/payment-captured.cassette.yaml"),
    ))
    .expect("cassette parses")
    .expect("cassette is not empty")
    .to_json();
    let cassette = Cassette::from_value(cassette).expect("cassette");
    let body: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/payment.captured.json")).expect("event");
    let connections = weft::engine::connection::from_project(&ctx);
    let event =
        EventInput { id: "evt_bench".into(), body, kind: "payment.captured".into(), received_at: String::new() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let steps = plan.steps.len() as u64;

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(steps));
    group.bench_function("run_per_step_replay", |b| {
        b.iter_batched(
            // A fresh cassette per run so every request finds an unused answer, as in a real replay.
            || Runner::new(plan.clone(), Arc::new(Direct(Arc::new(Replay::new(cassette.clone())))), None, &connections),
            |runner| {
                let report = rt.block_on(runner.run(&event));
                assert_eq!(report.status, RunStatus::Succeeded);
                report
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
