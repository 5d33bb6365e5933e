//! `cargo bench --bench validate`: catalog load, and validating 1,000 generated realistic flows.
//! Targets (issue 3): catalog load ≤ 50 ms; ≤ 1 ms per flow. `benches/validate_wall.sh` times the whole
//! `weft validate` command on the same 1,000 flows written to disk.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use weft::catalog::Catalog;
use weft::source::SourceFile;
use weft::validate::{validate_flow, ProjectContext};

/// The five realistic templates in `benches/data/flow_templates.txt`, instantiated `count` times.
pub fn generated_flows(count: usize) -> Vec<SourceFile> {
    let templates: Vec<&str> = include_str!("data/flow_templates.txt").split("%%\n").collect();
    (0..count)
        .map(|i| {
            let text =
                templates[i % templates.len()].replace("{n}", &i.to_string()).replace("{m}", &(i % 60).to_string());
            SourceFile::new(format!("flows/generated-{i}.yaml"), text)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    c.bench_function("catalog_load_builtin", |b| b.iter(|| black_box(Catalog::builtin().expect("catalog"))));

    let project = ProjectContext::from_source(&SourceFile::new("weft.yaml", include_str!("data/weft.yaml")));
    assert!(project.diagnostics.is_empty(), "{:?}", project.diagnostics);
    let flows = generated_flows(1000);
    for f in &flows {
        let d = validate_flow(f, &project);
        assert!(
            d.is_empty(),
            "generated flow {} is not clean: {:#?}",
            f.name(),
            d.iter().map(weft::diag::render::one_line).collect::<Vec<_>>()
        );
    }
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    group.bench_function("1000_flows", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(validate_flow(f, &project));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
