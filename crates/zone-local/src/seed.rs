//! Deterministic demo data from `local_zone.seed`: one corp with six staff (one outside the
//! authorisation scope), eight customers, four group chats (a customer group, an internal group with
//! a robot, an unnamed internal group, and one whose archive has expired), 1:1 chats, five days of
//! messages of several types ending at the zone's start, consent, two keyword rules with their hits,
//! two knowledge sets and two customer tag groups. Same seed and start time, same world.

use serde_json::json;

use super::model::{
    Chat, Consent, Customer, Doc, Hit, KnowledgeBase, Member, Message, Party, RETENTION_SECS, Rule, Staff, TagGroup,
    ZoneData,
};

/// Messages in the seeded archive.
pub const SEEDED_MESSAGES: usize = 240;

/// SplitMix64: a tiny, stable mixing function for deterministic ids and choices.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic stream of numbers.
struct SeedRng(u64);

impl SeedRng {
    fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const STAFF: [(&str, &str); 6] = [
    ("张伟", "zhangwei"),
    ("李娜", "lina"),
    ("王芳", "wangfang"),
    ("刘洋", "liuyang"),
    ("陈静", "chenjing"),
    ("赵磊", "zhaolei"),
];
const CUSTOMERS: [(&str, &str); 8] = [
    ("周先生", "zhouxiansheng"),
    ("吴女士", "wunvshi"),
    ("郑总", "zhengzong"),
    ("孙小姐", "sunxiaojie"),
    ("钱先生", "qianxiansheng"),
    ("冯女士", "fengnvshi"),
    ("何经理", "hejingli"),
    ("罗同学", "luotongxue"),
];
const CUSTOMER_LINES: [&str; 12] = [
    "你好，我想咨询一下这款产品的价格",
    "请问什么时候可以发货？",
    "收到货了，质量不错，谢谢！",
    "物流太慢了，我很失望",
    "我要投诉，商品有质量问题，申请退款",
    "我的手机号是13800138000，请回电",
    "邮箱 customer@example.com，麻烦发一下报价单",
    "好的，我考虑一下再下单",
    "服务很满意，会推荐给朋友",
    "还没收到退款，怎么回事？",
    "发个红包感谢一下",
    "【示例违规内容：政治敏感】",
];
const STAFF_LINES: [&str; 8] = [
    "您好，很高兴为您服务",
    "这款产品目前优惠价是299元",
    "已为您安排今天发货",
    "非常抱歉给您带来不便，我们马上处理",
    "退款已提交，预计3个工作日到账",
    "感谢您的支持！",
    "请问还有其他问题吗？",
    "产品说明书已发您邮箱，请查收",
];
const INTERNAL_LINES: [&str; 6] = [
    "今天的周会改到下午三点",
    "客户反馈的问题已记录，明天跟进",
    "本周销售目标完成80%",
    "新版报价单已上传共享盘",
    "【示例违规内容：色情】",
    "辛苦了，谢谢大家",
];
const OTHER_TYPES: [(u32, &str); 5] = [
    (4, "链接：产品介绍页"),
    (8, "文件：报价单.pdf"),
    (20, "图文：新品海报 欢迎选购"),
    (2, "语音：您好请问在吗"),
    (18, "在线文档：售后流程"),
];

/// Builds the demo world for `seed`, with message times ending at `start` (unix seconds).
pub fn world(seed: u64, start: i64) -> ZoneData {
    let mut rng = SeedRng(seed);
    let mut data = ZoneData { receive_program: String::new(), ..ZoneData::default() };
    let id = |prefix: &str, rng: &mut SeedRng| format!("{prefix}{:016x}", rng.next());
    for (i, (name, pinyin)) in STAFF.iter().enumerate() {
        let userid = id("wo", &mut rng);
        data.staff.push(Staff {
            userid,
            name: (*name).into(),
            pinyin: (*pinyin).into(),
            department: 1 + (i as u32 % 2),
            in_scope: i != 5,
        });
    }
    for (i, (name, pinyin)) in CUSTOMERS.iter().enumerate() {
        let follower = data.staff[i % 6].userid.clone();
        data.customers.push(Customer {
            external_userid: id("wm", &mut rng),
            name: (*name).into(),
            pinyin: (*pinyin).into(),
            follower,
        });
    }
    seed_chats(&mut data, &mut rng, start);
    seed_consent(&mut data, start);
    seed_messages(&mut data, &mut rng, start);
    seed_rules(&mut data, start);
    seed_knowledge(&mut data);
    data.next_id = seed;
    data
}

fn staff(data: &ZoneData, i: usize) -> Party {
    Party { kind: 1, id: data.staff[i].userid.clone() }
}

fn customer(data: &ZoneData, i: usize) -> Party {
    Party { kind: 2, id: data.customers[i].external_userid.clone() }
}

fn seed_chats(data: &mut ZoneData, rng: &mut SeedRng, start: i64) {
    let groups: [(&str, Vec<Party>, bool, bool); 4] = [
        (
            "VIP客户服务群",
            vec![staff(data, 0), staff(data, 1), customer(data, 0), customer(data, 1), customer(data, 2)],
            false,
            false,
        ),
        (
            "产品讨论组",
            vec![staff(data, 0), staff(data, 2), staff(data, 3), Party { kind: 3, id: "wbrobot0001".into() }],
            true,
            false,
        ),
        ("", vec![staff(data, 2), staff(data, 3), staff(data, 4)], true, false),
        ("产品年会筹备组", vec![staff(data, 1), staff(data, 4)], true, true),
    ];
    for (k, (name, members, internal, expired)) in groups.into_iter().enumerate() {
        let chatid = format!("wr{:016x}", rng.next());
        let create_time = start - RETENTION_SECS * (2 + k as i64 * 20);
        let creator = members[0].id.clone();
        let members = members
            .into_iter()
            .enumerate()
            .map(|(j, party)| Member { party, jointime: create_time + 60 * j as i64 })
            .collect();
        data.chats.insert(
            chatid.clone(),
            Chat { chatid, name: name.into(), creator, create_time, members, archive_expired: expired, internal },
        );
    }
}

fn seed_consent(data: &mut ZoneData, start: i64) {
    for (i, c) in data.customers.iter().enumerate() {
        data.consent.push(Consent {
            userid: c.follower.clone(),
            external_userid: c.external_userid.clone(),
            agree: i != 3,
            change_time: start - 10 * 86_400 + i as i64 * 3600,
        });
    }
    for chat in data.chats.values().filter(|c| !c.internal) {
        for (j, m) in chat.members.iter().filter(|m| m.party.kind == 2).enumerate() {
            data.room_consent.insert((chat.chatid.clone(), m.party.id.clone()), (j != 1, chat.create_time + 3600));
        }
    }
}

/// The conversations messages are drawn from: (chatid, parties). 1:1 chats have an empty chatid.
fn conversations(data: &ZoneData) -> Vec<(String, Vec<Party>)> {
    let mut convs: Vec<(String, Vec<Party>)> = data
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let follower = data.staff.iter().position(|s| s.userid == c.follower).expect("seeded follower");
            (String::new(), vec![customer(data, i), staff(data, follower)])
        })
        .collect();
    convs.push((String::new(), vec![staff(data, 0), staff(data, 1)]));
    for chat in data.chats.values().filter(|c| !c.archive_expired) {
        convs.push((
            chat.chatid.clone(),
            chat.members.iter().map(|m| m.party.clone()).filter(|p| p.kind != 3).collect(),
        ));
    }
    convs
}

fn seed_messages(data: &mut ZoneData, rng: &mut SeedRng, start: i64) {
    let convs = conversations(data);
    let span = RETENTION_SECS - 1200;
    for i in 0..SEEDED_MESSAGES {
        let (chatid, parties) = &convs[rng.below(convs.len())];
        let sender = parties[rng.below(parties.len())].clone();
        let (msgtype, content) = if i % 7 == 6 {
            let (t, c) = OTHER_TYPES[rng.below(OTHER_TYPES.len())];
            (t, c.to_owned())
        } else {
            let lines: &[&str] = match (sender.kind, parties.iter().any(|p| p.kind == 2)) {
                (2, _) => &CUSTOMER_LINES,
                (_, true) => &STAFF_LINES,
                _ => &INTERNAL_LINES,
            };
            (1, lines[rng.below(lines.len())].to_owned())
        };
        let send_time = start - RETENTION_SECS + 600 + (span * i as i64) / SEEDED_MESSAGES as i64;
        let message = new_message(data, rng.next(), sender, parties, chatid, send_time, msgtype, content);
        data.messages.push(message);
    }
}

/// A message with the next seq and ids and key derived from `salt`.
#[expect(clippy::too_many_arguments, reason = "a plain record constructor")]
pub fn new_message(
    data: &ZoneData,
    salt: u64,
    sender: Party,
    parties: &[Party],
    chatid: &str,
    send_time: i64,
    msgtype: u32,
    content: String,
) -> Message {
    let seq = data.messages.last().map_or(1, |m| m.seq + 1);
    Message {
        seq,
        msgid: format!("{:016x}{:08x}_{}", salt, seq, send_time),
        receivers: parties.iter().filter(|p| **p != sender).cloned().collect(),
        sender,
        chatid: chatid.to_owned(),
        send_time,
        msgtype,
        content,
        secret_key: format!("{:016x}{:016x}", splitmix(salt), splitmix(salt ^ 0xa5a5)),
    }
}

fn seed_rules(data: &mut ZoneData, start: i64) {
    let rules = [
        Rule {
            rule_id: "rule_refund".into(),
            name: "退款投诉关注".into(),
            create_time: start - 30 * 86_400,
            words: vec!["退款".into(), "投诉".into()],
            is_case_sensitive: 0,
            match_rule: 0,
            is_trim_msg: 0,
            semantics: vec![2],
            applicable_range: json!({"target_type": {"type_list": [2]}}),
        },
        Rule {
            rule_id: "rule_contact".into(),
            name: "联系方式外泄".into(),
            create_time: start - 20 * 86_400,
            words: vec![],
            is_case_sensitive: 0,
            match_rule: 0,
            is_trim_msg: 0,
            semantics: vec![1, 3],
            applicable_range: json!({}),
        },
    ];
    for rule in rules {
        data.rules.insert(rule.rule_id.clone(), rule);
    }
    let hits: Vec<(u64, Vec<_>)> = data
        .messages
        .iter()
        .map(|m| (m.seq, super::sdk_rules::match_rules(data.rules.values(), m)))
        .filter(|(_, h)| !h.is_empty())
        .collect();
    for (i, (msg_seq, rules)) in hits.into_iter().enumerate() {
        data.hits.push(Hit { seq: i as u64 + 1, msg_seq, rules });
    }
}

fn seed_knowledge(data: &mut ZoneData) {
    let doc = |docid, name: &str, kind, text: &str| Doc { docid, doc_name: name.into(), kind, text: text.into() };
    let kbs = [
        KnowledgeBase {
            kb_id: "kblocalfaq0001".into(),
            kb_name: "客服知识".into(),
            docs: vec![
                doc(1001, "退换货政策.pdf", 2, "签收7天内可无理由退货，退款3个工作日内原路返回。"),
                doc(1002, "发货说明.docx", 6, "下单后48小时内发货，默认顺丰快递。"),
            ],
        },
        KnowledgeBase {
            kb_id: "kblocalprod0002".into(),
            kb_name: "产品手册".into(),
            docs: vec![doc(2001, "官网", 101, "旗舰款优惠价299元，支持一年质保。")],
        },
    ];
    for kb in kbs {
        data.kbs.insert(kb.kb_id.clone(), kb);
    }
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    data.tag_groups = vec![
        TagGroup {
            group_id: "etgroup_intent".into(),
            name: "购买意向".into(),
            tags: vec![
                ("ettag_high".into(), "高意向".into(), words(&["价格", "下单", "报价"])),
                ("ettag_low".into(), "低意向".into(), words(&["考虑", "再说"])),
            ],
        },
        TagGroup {
            group_id: "etgroup_issue".into(),
            name: "售后问题".into(),
            tags: vec![
                ("ettag_refund".into(), "退款".into(), words(&["退款", "退货"])),
                ("ettag_logistics".into(), "物流".into(), words(&["发货", "物流"])),
            ],
        },
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_builds_the_same_world_and_another_seed_a_different_one() {
        let a = world(42, 1_700_000_000);
        let b = world(42, 1_700_000_000);
        let c = world(43, 1_700_000_000);
        let ids = |d: &ZoneData| d.messages.iter().map(|m| m.msgid.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        assert_eq!(a.messages.len(), SEEDED_MESSAGES);
    }

    #[test]
    fn seeded_messages_span_the_five_day_window_in_order_with_several_types_and_hits() {
        let start = 1_700_000_000;
        let d = world(7, start);
        assert!(d.messages.windows(2).all(|w| w[0].seq < w[1].seq && w[0].send_time <= w[1].send_time));
        assert!(d.messages.iter().all(|m| m.send_time > start - RETENTION_SECS && m.send_time <= start));
        let types: std::collections::BTreeSet<u32> = d.messages.iter().map(|m| m.msgtype).collect();
        assert!(types.len() >= 3, "{types:?}");
        assert!(!d.hits.is_empty());
        assert!(d.messages.iter().any(|m| !d.in_scope(m)), "some messages are out of scope");
    }
}
