//! How one Envoy message is packed into another: as an `Any`, its type URL
//! beside its bytes. Every part of the generator packs filters, transport
//! sockets and extensions this way.

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

pub(super) fn any<M: Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}
