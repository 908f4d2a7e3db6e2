//! CEL through the `cel` crate: compiling expressions once, binding the admission variables
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`) from JSON, and
//! evaluating to a boolean or a string.

pub use krust_api::cel::to_cel;
use serde_json::Value;

/// A compiled expression, or why it does not compile.
#[derive(Debug)]
pub struct Expression {
    /// The source.
    pub source: String,
    program: Result<cel::Program, String>,
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelError {
    /// The expression does not compile.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// Evaluation failed.
    #[error("{0}")]
    Execution(String),
    /// The expression evaluated to another type than asked for.
    #[error("expected {expected}, got {got}")]
    Type {
        /// What was expected.
        expected: &'static str,
        /// What it evaluated to.
        got: String,
    },
}

impl Expression {
    /// Compiles `source` (a compile error is kept and reported at evaluation).
    pub fn compile(source: &str) -> Self {
        let program = cel::Program::compile(source).map_err(|e| e.to_string());
        Self { source: source.to_string(), program }
    }

    /// Evaluates the expression over `vars`.
    pub fn evaluate(&self, vars: &Variables) -> Result<cel::Value, CelError> {
        let program = self.program.as_ref().map_err(|e| CelError::Compile(e.clone()))?;
        let mut context = cel::Context::default();
        for (name, value) in &vars.0 {
            context.add_variable_from_value(name.clone(), value.clone());
        }
        program.execute(&context).map_err(|e| CelError::Execution(e.to_string()))
    }

    /// Evaluates the expression to a boolean.
    pub fn evaluate_bool(&self, vars: &Variables) -> Result<bool, CelError> {
        match self.evaluate(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(CelError::Type { expected: "bool", got: format!("{other:?}") }),
        }
    }

    /// Evaluates the expression to a string.
    pub fn evaluate_string(&self, vars: &Variables) -> Result<String, CelError> {
        match self.evaluate(vars)? {
            cel::Value::String(s) => Ok(s.to_string()),
            other => Err(CelError::Type { expected: "string", got: format!("{other:?}") }),
        }
    }
}

/// The variables an expression sees, converted from JSON once per request.
#[derive(Debug, Clone, Default)]
pub struct Variables(Vec<(String, cel::Value)>);

impl Variables {
    /// Binds `name` to a JSON value (integers become CEL `int`, as upstream's object
    /// conversion does).
    pub fn set(&mut self, name: &str, value: &Value) {
        self.set_cel(name, to_cel(value));
    }

    /// Binds `name` to a CEL value.
    pub fn set_cel(&mut self, name: &str, value: cel::Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn expressions_read_json_objects() {
        let mut vars = Variables::default();
        vars.set("object", &json!({"spec": {"replicas": 6}, "metadata": {"name": "web"}}));
        let e = Expression::compile("object.spec.replicas <= 5");
        assert!(!e.evaluate_bool(&vars).unwrap());
        assert!(Expression::compile("has(object.spec.replicas)").evaluate_bool(&vars).unwrap());
        assert!(!Expression::compile("has(object.spec.paused)").evaluate_bool(&vars).unwrap());
        assert_eq!(
            Expression::compile("'name ' + object.metadata.name").evaluate_string(&vars).unwrap(),
            "name web"
        );
    }

    #[test]
    fn bad_expressions_fail_when_evaluated() {
        let vars = Variables::default();
        assert!(matches!(
            Expression::compile("object.").evaluate_bool(&vars),
            Err(CelError::Compile(_))
        ));
        assert!(Expression::compile("nothing.here").evaluate_bool(&vars).is_err());
        assert!(matches!(
            Expression::compile("1 + 1").evaluate_bool(&vars),
            Err(CelError::Type { .. })
        ));
    }
}
