//! The admin listener's application: `/metrics` (the process's metrics, and the store's
//! outbox), `/healthz`, `/readyz`. Here, not in `metrics`, because it reads the store:
//! `metrics` depends on nothing below it.

/// The admin listener's routes: `/metrics`, `/healthz` (the process answers), `/readyz`
/// (the store answers; the listeners are bound before this listener starts).
pub(crate) fn admin_router(store: crate::store::StoreLocation) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let pending = move |location: crate::store::StoreLocation| async move {
        tokio::task::spawn_blocking(move || location.open_outbox()?.pending_emails())
            .await
            .ok()
            .and_then(Result::ok)
    };
    let (s1, s2) = (store.clone(), store);
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let s = s1.clone();
                async move {
                    let outbox = pending(s).await;
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        crate::metrics::METRICS.render(outbox),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let s = s2.clone();
                async move {
                    match pending(s).await {
                        Some(_) => (StatusCode::OK, "ready\n").into_response(),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the store is unavailable\n",
                        )
                            .into_response(),
                    }
                }
            }),
        )
}
