//! The BBDO listeners and connectors as sources of the service: the `bbdo`
//! crate runs the sessions, and hands their events to the source's feed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::sources::{Feed, Running, Source, SourceKind};
use crate::bbdo::connector::{self, ConnectorConfig};
use crate::bbdo::listener::Listener;
use crate::bbdo::{Inputs, SessionConfig};
use crate::net::AllowList;

/// A bound BBDO listener: Centreon Brokers connect to it.
pub struct BbdoListener {
    pub listener: Listener,
    pub session: SessionConfig,
    pub allow: AllowList,
    pub max_connections: usize,
    /// Where its connections show (`GET /api/v1/inputs`).
    pub inputs: Arc<Inputs>,
}

impl BbdoListener {
    pub fn address(&self) -> SocketAddr {
        self.listener.address
    }
}

impl Source for BbdoListener {
    fn kind(&self) -> SourceKind {
        SourceKind::BbdoListener
    }

    fn name(&self) -> String {
        self.listener.address.to_string()
    }

    fn run(self: Box<Self>, feed: Arc<Feed>, stop: CancellationToken) -> Running {
        let this = *self;
        Box::pin(this.listener.run(
            this.session,
            this.allow,
            this.max_connections,
            feed,
            this.inputs,
            stop,
        ))
    }
}

/// A Centreon Broker that listens, which brokerstream dials.
pub struct BbdoConnector {
    pub peer: ConnectorConfig,
    pub session: SessionConfig,
    pub inputs: Arc<Inputs>,
}

impl Source for BbdoConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::BbdoConnector
    }

    fn name(&self) -> String {
        self.peer.address.clone()
    }

    fn run(self: Box<Self>, feed: Arc<Feed>, stop: CancellationToken) -> Running {
        Box::pin(connector::run(
            self.peer,
            self.session,
            feed,
            self.inputs,
            stop,
        ))
    }
}
