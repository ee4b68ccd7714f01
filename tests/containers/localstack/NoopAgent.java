import java.lang.instrument.Instrumentation;

/** Stands in for LocalStack's DynamoDB Local patch agent, which its server always passes with
 *  -javaagent: loads and changes nothing (DynamoDB Local keeps its own limits). */
public final class NoopAgent {
    private NoopAgent() {}

    public static void premain(String arguments, Instrumentation instrumentation) {}
}
