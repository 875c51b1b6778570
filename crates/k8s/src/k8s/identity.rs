//! Dataplane identity on Kubernetes: `kuma-dp` presents its pod's
//! service-account token; the API server vouches for it (`TokenReview`),
//! and the pod behind the Dataplane must run in that namespace as that
//! service account.

use crate::xds::credentials::{AuthError, CredentialVerifier};
use crate::xds::index::ProxyId;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

/// Why a stream's service-account token was refused; the message says
/// which check failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no service-account token was presented (kuma-dp --dataplane-token-file {DEFAULT_TOKEN_PATH})"
    )]
    Missing,
    #[error("the API server did not accept the service-account token: {0}")]
    NotAuthenticated(String),
    #[error("the token is of \"{0}\", not of a service account")]
    NotServiceAccount(String),
    #[error(
        "the token is of service account \"{account}\" of namespace \"{token_namespace}\"; the dataplane is in namespace \"{dataplane_namespace}\""
    )]
    WrongNamespace {
        account: String,
        token_namespace: String,
        dataplane_namespace: String,
    },
    #[error("the token is of service account \"{token}\"; pod \"{pod}\" runs as \"{pod_account}\"")]
    WrongServiceAccount {
        token: String,
        pod: String,
        pod_account: String,
    },
    #[error("dataplane \"{0}\" is not named {{pod}}.{{namespace}}")]
    NotAPod(String),
    #[error("pod \"{0}\" does not exist")]
    NoPod(String),
    #[error("cannot reach the API server: {0}")]
    Api(#[source] kube::Error),
}

/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

pub struct ServiceAccountVerifier {
    pub client: kube::Client,
}

#[async_trait::async_trait]
impl CredentialVerifier for ServiceAccountVerifier {
    /// The API server not answering is worth asking again; every other
    /// refusal is final.
    async fn verify(&self, token: &str, id: &ProxyId) -> Result<(), AuthError> {
        self.review(token, id).await.map_err(|e| match e {
            IdentityError::Api(_) => AuthError::Unavailable(e.to_string()),
            other => AuthError::Refused(format!("dataplane {id}: {other}")),
        })
    }
}

impl ServiceAccountVerifier {
    /// Checks that `token` belongs to the pod behind dataplane `id`
    /// (`{pod}.{namespace}`).
    pub async fn review(&self, token: &str, id: &ProxyId) -> Result<(), IdentityError> {
        let token = token.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if token.is_empty() {
            return Err(IdentityError::Missing);
        }
        let (pod_name, namespace) = id
            .name
            .rsplit_once('.')
            .ok_or_else(|| IdentityError::NotAPod(id.name.clone()))?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(IdentityError::Api)?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(IdentityError::NotAuthenticated(
                status.error.unwrap_or_else(|| "not authenticated".into()),
            ));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        let Some((token_namespace, account)) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        else {
            return Err(IdentityError::NotServiceAccount(username));
        };
        if token_namespace != namespace {
            return Err(IdentityError::WrongNamespace {
                account: account.to_string(),
                token_namespace: token_namespace.to_string(),
                dataplane_namespace: namespace.to_string(),
            });
        }
        let pod = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(pod_name)
            .await
            .map_err(IdentityError::Api)?
            .ok_or_else(|| IdentityError::NoPod(format!("{pod_name}.{namespace}")))?;
        let pod_account = pod
            .spec
            .and_then(|s| s.service_account_name)
            .unwrap_or_else(|| "default".into());
        if pod_account != account {
            return Err(IdentityError::WrongServiceAccount {
                token: account.to_string(),
                pod: format!("{pod_name}.{namespace}"),
                pod_account,
            });
        }
        Ok(())
    }
}
