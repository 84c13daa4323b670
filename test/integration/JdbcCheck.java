// JdbcCheck.java - the PostgreSQL JDBC driver's default prepared-statement
// behaviour through the pooler (server-side prepare after 5 executions).
// Usage: java -cp postgresql.jar JdbcCheck.java PORT THREADS ROUNDS
// Prints "OK <n>" with the number of checked results, or the first error.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        final String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/app?user=app";
        final int threads = Integer.parseInt(args[1]), rounds = Integer.parseInt(args[2]);
        final AtomicLong checked = new AtomicLong();
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> all = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int k = t;
            Thread th = new Thread(() -> {
                try (Connection c = DriverManager.getConnection(url)) {
                    try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
                        for (int i = 0; i < rounds; i++) {
                            ps.setInt(1, k * 1000 + i);
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                if (rs.getInt(1) != k * 1000 + i + 1)
                                    throw new IllegalStateException("wrong result " + rs.getInt(1));
                            }
                            checked.incrementAndGet();
                        }
                    }
                    c.setAutoCommit(false);
                    try (PreparedStatement ps = c.prepareStatement("SELECT ?::text || 'j'")) {
                        for (int i = 0; i < rounds; i++) {
                            ps.setString(1, "v" + i);
                            try (ResultSet rs = ps.executeQuery()) {
                                rs.next();
                                if (!rs.getString(1).equals("v" + i + "j"))
                                    throw new IllegalStateException("wrong text " + rs.getString(1));
                            }
                            c.commit();
                            checked.incrementAndGet();
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            all.add(th);
            th.start();
        }
        for (Thread th : all)
            th.join();
        if (failure.get() != null) {
            System.out.println("FAIL " + failure.get());
            System.exit(1);
        }
        System.out.println("OK " + checked.get());
    }
}
