use spate::prelude::*;
fn main() -> Result<()> {
    let ctx = Context::builder().threads(2).build()?;
    let ds = ctx
        .from_vec(vec!["b a c".to_string()])
        .flat_map(into_words)
        .count_by_value()
        .sort_by(|(w, _)| w.clone(), true);
    println!("{}", ds.explain()?);
    Ok(())
}
