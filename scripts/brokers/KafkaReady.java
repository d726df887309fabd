// Readiness probe for kafka.sh: exits 0 once the broker answers a real
// admin request (DescribeCluster lists a node and ListTopics answers),
// 1 when the deadline passes first. The optional third argument is a client properties file
// (security.protocol, ssl.*, sasl.*) for brokers that need TLS or SASL.
// Usage: java -cp 'lib/*:classes' KafkaReady <bootstrap> <deadline-seconds> [client.properties]
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Collection;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.common.Node;

public final class KafkaReady {
  public static void main(String[] args) throws InterruptedException, IOException {
    String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
    long seconds = args.length > 1 ? Long.parseLong(args[1]) : 30;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);

    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.CLIENT_ID_CONFIG, "omnibus-kafka-ready");
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
    props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
    if (args.length > 2) {
      try (InputStream in = new FileInputStream(args[2])) {
        props.load(in);
      }
    }

    String last = "no attempt made";
    try (Admin admin = Admin.create(props)) {
      while (System.nanoTime() < deadline) {
        try {
          DescribeClusterResult cluster =
              admin.describeCluster(new DescribeClusterOptions().timeoutMs(3000));
          Collection<Node> nodes = cluster.nodes().get(4, TimeUnit.SECONDS);
          String clusterId = cluster.clusterId().get(4, TimeUnit.SECONDS);
          if (!nodes.isEmpty()) {
            int topics =
                admin.listTopics(new ListTopicsOptions().timeoutMs(3000))
                    .names()
                    .get(4, TimeUnit.SECONDS)
                    .size();
            System.out.println(
                "cluster " + clusterId + ", " + nodes.size() + " node(s), " + topics + " topic(s)");
            return;
          }
          last = "DescribeCluster returned no nodes";
        } catch (Exception e) {
          last = e.getCause() != null ? e.getCause().toString() : e.toString();
        }
        Thread.sleep(200);
      }
    }
    System.err.println("no answer from " + bootstrap + " within " + seconds + "s: " + last);
    System.exit(1);
  }
}
