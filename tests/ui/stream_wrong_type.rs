use eventcore::Command;

#[derive(Command)]
struct Deposit {
    #[stream(Account)]
    account: String,
}

fn main() {}
