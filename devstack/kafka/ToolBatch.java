// Runs several of Kafka's command-line tools (kafka-acls, kafka-configs: their main classes) in one JVM, one call per
// line of standard input: "<main class>\t<arg>\t<arg>...". Started with Java's single-file source launcher by
// tandem_devstack.kafka_auth; one JVM instead of one per call keeps the secured broker's first start short.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Arrays;

import org.apache.kafka.common.utils.Exit;

public class ToolBatch {
    public static void main(String[] ignored) throws Exception {
        // The tools end with Exit.exit(code); a failure must stop the batch with its code, a success must not.
        Exit.setExitProcedure((code, message) -> {
            if (code != 0) {
                System.out.flush();
                Runtime.getRuntime().halt(code);
            }
        });
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            String[] words = line.split("\t");
            Class.forName(words[0])
                .getMethod("main", String[].class)
                .invoke(null, (Object) Arrays.copyOfRange(words, 1, words.length));
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
