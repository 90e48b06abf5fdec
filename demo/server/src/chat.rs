//! The chat's handlers: every post is checked by the contract's own rule, and each
//! member's badge is decided as they join.

use tether_demo_chat::{Badge, Chat, Post, Question, RoomStats};
use tether_server::Handlers;

/// The chat channel's handlers.
pub fn handlers() -> Handlers<Chat> {
    Handlers::<Chat>::new()
        // The host is whoever finds the room empty (a room nobody is in and nothing was
        // said in is not found at all).
        .on_join(|call| async move {
            let present = call.api.presence(&call.room, None, Some(1)).await;
            Ok(Badge { host: present.map_or(true, |page| page.count == 0) })
        })
        .on_publish(|_call, post: Post| async move { post.check().map(|()| post) })
        .on_request(|call, question: Question| async move {
            match question {
                Question::Stats => {
                    let messages =
                        call.api.history(&call.room, None, Some(0)).await.map_or(0, |page| page.head);
                    let here =
                        call.api.presence(&call.room, None, Some(1)).await.map_or(0, |page| page.count);
                    Ok(RoomStats { messages, here })
                }
            }
        })
}
