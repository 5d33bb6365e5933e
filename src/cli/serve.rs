//! `weft serve`: build the service from the project's flows, then serve until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::render;
use crate::serve::{self, Service};
use crate::store::journal::Journal;
use crate::store::sqlite::SqliteStore;
use crate::validate::{find_project, ProjectContext};

pub fn run(paths: &[PathBuf], listen: std::net::SocketAddr, workers: usize, state: Option<&Path>) -> i32 {
    let probe = paths.first().map(|p| p.join("x")).unwrap_or_else(|| PathBuf::from("x"));
    let project = find_project(&probe);
    let ctx = ProjectContext::load(project.as_deref());
    let errors: Vec<_> = ctx.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        for d in errors {
            eprintln!("{}", render::human(d, render::Human::plain()));
        }
        return EXIT_INVALID;
    }
    let base = project.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let db = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base.join(ctx.project.state.as_deref().unwrap_or(".weft/state.db")));
    let store = match SqliteStore::open(&db) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let journal = match Journal::open(&Journal::beside(&db)) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let svc = match Service::build(&ctx, paths, store) {
        Ok(s) => Arc::new(s.with_journal(journal)),
        Err(diags) => {
            super::eprint_diagnostics(&diags);
            return EXIT_INVALID;
        }
    };
    tracing::info!(
        "listening on http://{listen} (POST /hooks/CONNECTION, GET /healthz, GET /metrics), state {}",
        db.display()
    );
    for line in svc.describe() {
        tracing::info!("{line}");
    }
    let rt = match super::runtime(2) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(serve::run(svc, listen, workers, shutdown_signal()));
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// Ctrl-C, or SIGTERM on unix (what a service manager sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down; finishing events in flight");
}
