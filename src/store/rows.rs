//! Stored rows as the backends read them, turned into the policy's types here — one
//! conversion for every backend.

use crate::policy::app_password::{AppPassword, LastUse};
use crate::policy::login::Reason;
use crate::policy::mailbox::{Device, DeviceKind, PendingDevice};
use crate::policy::passkey::Passkey;
use crate::policy::totp::DeviceSecret;
use crate::policy::{Mailbox, Plan, ProtocolSet};
use crate::store::StoreError;
use jiff::Timestamp;

/// A reason as stored: its code and fields, as JSON.
pub(crate) fn reason_column(r: &Reason) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", r.kind()))
}

/// A stored reason: its code and fields; a row from before reasons were codes holds the
/// English words as then written, kept as [`Reason::Text`].
pub(crate) fn reason_of(column: String) -> Reason {
    if column.starts_with('{')
        && let Ok(r) = serde_json::from_str(&column)
    {
        return r;
    }
    Reason::Text(column)
}

/// A stored time (seconds since the epoch).
pub(crate) fn ts(secs: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_second(secs).map_err(|e| StoreError::Corrupt(format!("timestamp {secs}: {e}")))
}

/// The raw columns of one mailbox row, as a backend reads them; converted here,
/// the same for every backend.
pub(crate) struct MailboxRow {
    pub(crate) id: i64,
    pub(crate) address: String,
    pub(crate) plan: String,
    pub(crate) contact: Option<String>,
    pub(crate) protocols: i64,
    pub(crate) migration: bool,
    pub(crate) version: i64,
    pub(crate) device: (Option<Vec<u8>>, Option<i64>, Option<i64>),
    /// A passkey device: its credential id, public key and counter.
    pub(crate) passkey: (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>),
    pub(crate) pending: (Option<Vec<u8>>, Option<String>, Option<i64>),
    pub(crate) password_hash: String,
    /// Since when its main password is known breached.
    pub(crate) breached_at: Option<i64>,
}

impl MailboxRow {
    pub(crate) fn into_mailbox(self) -> Result<Mailbox, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("mailbox {}: {what}", self.address));
        let plan: Plan = self.plan.parse().map_err(|_| corrupt("plan"))?;
        let protocols =
            ProtocolSet::from_bits(u8::try_from(self.protocols).map_err(|_| corrupt("protocols"))?);
        let device = match (self.device, self.passkey) {
            ((Some(secret), last, Some(since)), (None, None, _)) => Some(Device::app(
                DeviceSecret::from_bytes(secret),
                last.map(|s| u64::try_from(s).map_err(|_| corrupt("device_last_step")))
                    .transpose()?,
                ts(since)?,
            )),
            ((None, _, Some(since)), (Some(id), Some(public_key), counter)) => Some(Device {
                kind: DeviceKind::Passkey(Passkey {
                    id,
                    public_key,
                    counter: u32::try_from(counter.unwrap_or(0))
                        .map_err(|_| corrupt("passkey_counter"))?,
                }),
                associated_at: ts(since)?,
            }),
            ((None, _, _), (None, None, _)) => None,
            _ => return Err(corrupt("device")),
        };
        let pending_device = match self.pending {
            (Some(secret), Some(purpose), Some(since)) => Some(PendingDevice {
                secret: DeviceSecret::from_bytes(secret),
                purpose: purpose.parse()?,
                since: ts(since)?,
            }),
            (None, _, _) => None,
            _ => return Err(corrupt("pending device")),
        };
        Ok(Mailbox {
            id: self.id,
            address: self.address,
            plan,
            contact: self.contact,
            protocols,
            migration: self.migration,
            password_hash: self.password_hash,
            device,
            pending_device,
            app_passwords: Vec::new(),
            version: self.version,
            main_breached: self.breached_at.map(ts).transpose()?,
        })
    }
}

/// The raw columns of one app password row.
pub(crate) struct AppRow {
    pub(crate) id: i64,
    pub(crate) mailbox_id: i64,
    pub(crate) name: String,
    pub(crate) selector: Option<String>,
    pub(crate) scope: Option<i64>,
    pub(crate) hash: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) postponed: i64,
    pub(crate) last: (Option<i64>, Option<String>, Option<String>, Option<String>),
    pub(crate) next_reminder_at: Option<i64>,
    /// The networks it is pinned to, space-separated; none: anywhere.
    pub(crate) networks: Option<String>,
    /// The program of its last use, when the client said.
    pub(crate) last_software: Option<String>,
}

impl AppRow {
    pub(crate) fn into_app_password(self) -> Result<(i64, AppPassword), StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("app password {}: {what}", self.id));
        let scope = self
            .scope
            .map(|b| {
                u8::try_from(b)
                    .map(ProtocolSet::from_bits)
                    .map_err(|_| corrupt("scope"))
            })
            .transpose()?;
        let last_use = match self.last {
            (Some(at), Some(client), Some(protocol), Some(listener)) => Some(LastUse {
                at: ts(at)?,
                client,
                protocol: protocol.parse().map_err(|_| corrupt("last_protocol"))?,
                listener,
                software: self.last_software,
            }),
            _ => None,
        };
        Ok((
            self.mailbox_id,
            AppPassword {
                id: self.id,
                name: self.name,
                selector: self.selector,
                scope,
                hash: self.hash,
                created_at: ts(self.created_at)?,
                expires_at: ts(self.expires_at)?,
                postponed: u32::try_from(self.postponed).map_err(|_| corrupt("postponed"))?,
                last_use,
                next_reminder_at: self.next_reminder_at.map(ts).transpose()?,
                networks: crate::net::Network::list(self.networks.as_deref().unwrap_or(""))
                    .map_err(|_| corrupt("networks"))?,
            },
        ))
    }
}
